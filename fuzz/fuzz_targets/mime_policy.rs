//! Fuzzes the pipeline's view of message content: the bounded MIME parse
//! and facts, a policy decision on them, the subject rewrite and the
//! fail-closed guard. Nothing may panic; the facts stay within their bounds;
//! a rewritten message keeps its body byte for byte.

#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use sealgate::pipeline::parse::{self, Context, Limits};
use sealgate::pipeline::{Outgoing, guard, render};
use sealgate::policy::{Policy, PolicyConfig, Recipient, decide};

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        max_parts: 50,
        max_depth: 8,
        max_attachments: 10,
        max_body_text: 4096,
    };
    let context = Context {
        sender: "alice@corp.example",
        sender_internal: true,
        trigger_header: "X-Sealgate-Encrypt",
        trigger_trusted: true,
    };
    let Ok(facts) = parse::facts(data, &context, limits) else {
        return;
    };
    assert!(facts.body_text.len() <= limits.max_body_text);
    assert!(facts.attachments.len() <= limits.max_attachments);

    let config: PolicyConfig = toml::from_str(
        "[[rule]]\nname = \"k\"\nsubject_keyword = [\"[secure]\"]\naction = \"encrypt-required\"\n\
         [[rule]]\nname = \"r\"\nbody_regex = ['\\d{4}']\naction = \"quarantine\"\n",
    )
    .unwrap_or_default();
    let Ok(policy) = Policy::compile(config) else { return };
    let decision = decide(
        &policy,
        &facts,
        &Recipient { address: "bob@ext.example".into(), internal: false, released: false },
    );
    let _ = decision.explain();

    let rewritten = render::replace_subject(data, &facts.subject);
    if let Some(p) = data.windows(4).position(|w| w == b"\r\n\r\n") {
        assert!(rewritten.ends_with(&data[p + 2..]), "the body changed");
    }
    let out = Outgoing { recipients: vec![0], content: Arc::new(rewritten), must_be_encrypted: true };
    if guard::check(&out).is_ok() {
        // The guard let it through: the facts must agree it is encrypted.
        let wrapped = parse::facts(&out.content, &context, Limits::default())
            .map(|f| f.encrypted_for_gateway.is_some())
            .unwrap_or(true);
        assert!(wrapped, "the guard passed content the parser calls clear");
    }
});
