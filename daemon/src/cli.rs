//! The `sealgate` command line: `run` starts the daemon; the other verbs
//! inspect and manage it (through the control socket when it runs).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::Config;
use crate::control::{Request, Response};
use crate::tracking::Query;

#[derive(Debug, Parser)]
#[command(
    name = "sealgate",
    version,
    about = "Sealgate email encryption gateway"
)]
pub struct Cli {
    /// TOML bootstrap configuration (default: the embedded development default).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway.
    Run,
    /// Inspect and manage the queue.
    #[command(subcommand)]
    Queue(QueueCommand),
    /// Search message tracking events.
    Track(TrackArgs),
    /// Check a configuration file and print the effective settings.
    CheckConfig,
    /// Manage the gateway's keys on the PKCS#11 token.
    #[command(subcommand)]
    Keys(sealgate_hsm::cli::KeysCommand),
    /// Create and inspect the PKCS#11 token.
    #[command(subcommand)]
    Hsm(sealgate_hsm::cli::HsmCommand),
    /// The gateway's OpenPGP certificate; decrypt, encrypt, sign, verify a message.
    #[command(subcommand)]
    Pgp(sealgate_openpgp::cli::PgpCommand),
    /// The serial console recovery menu (or one of its actions).
    Console(crate::console::ConsoleArgs),
    /// Policy tools.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Recipients' certificates and partner gateways' certificates.
    #[command(subcommand)]
    Directory(DirectoryCommand),
    /// S/MIME: decrypt, encrypt, sign or verify a message (stdin to stdout).
    #[command(subcommand)]
    Smime(sealgate_smime::cli::SmimeCommand),
    /// Several nodes as one gateway: init, join, status, tracking on every node.
    #[command(subcommand)]
    Cluster(crate::cluster::cli::ClusterCommand),
}

#[derive(Debug, Subcommand)]
pub enum DirectoryCommand {
    /// Import S/MIME certificates (PEM, one or many, DER, PKCS#7) or OpenPGP
    /// keys (armored or binary); `-` for stdin. Held mail for their
    /// addresses is released at once.
    Import {
        file: PathBuf,
        /// Import as the gateway certificate of a partner domain.
        #[arg(long)]
        domain: Option<String>,
    },
    /// List every entry.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Show the entries for an address, `@domain` or fingerprint, with their certificates (PEM).
    Show { key: String },
    /// Remove an entry by fingerprint (or a unique prefix of 8+ hex digits).
    Remove { fingerprint: String },
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Read a message on stdin and print, per recipient, what the policy
    /// decides and why (a dry run: nothing is queued or sent).
    Explain(ExplainArgs),
}

#[derive(Debug, clap::Args)]
pub struct ExplainArgs {
    /// Envelope sender (default: the From header's address).
    #[arg(long = "from")]
    pub sender: Option<String>,
    /// Envelope recipients (default: the To, Cc and Bcc addresses).
    #[arg(long = "to")]
    pub recipients: Vec<String>,
    /// The connecting client's address (decides internal sender and trusted trigger header).
    #[arg(long, default_value = "127.0.0.1")]
    pub client_ip: std::net::IpAddr,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum QueueCommand {
    /// List queued messages and the state of each recipient.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Show one message's recipients, attempts and headers.
    Show { id: String },
    /// Delete a message from the queue.
    Delete { id: String },
    /// Retry a message now.
    Retry { id: String },
    /// Release a message's held and quarantined recipients: the policy and
    /// the recipients' keys are looked at again now (held mail is never sent
    /// in clear; a released quarantine is delivered as the policy allows).
    Release { id: String },
}

#[derive(Debug, clap::Args)]
pub struct TrackArgs {
    /// Sender address (substring).
    #[arg(long = "from")]
    pub sender: Option<String>,
    /// Recipient address (substring).
    #[arg(long = "to")]
    pub recipient: Option<String>,
    /// Queue id.
    #[arg(long)]
    pub id: Option<String>,
    /// Start of the time range: RFC 3339 (2026-11-28T17:00:00Z), Unix seconds, or an age like 30m, 2h, 1d.
    #[arg(long)]
    pub since: Option<String>,
    /// End of the time range, same forms as --since.
    #[arg(long)]
    pub until: Option<String>,
    #[arg(long, default_value_t = 1000)]
    pub limit: usize,
    #[arg(long)]
    pub json: bool,
}

/// Loads the configuration named on the command line, or the embedded default.
pub fn load_config(path: Option<&PathBuf>) -> Result<Config, String> {
    match path {
        Some(p) => Config::load(p).map_err(|e| e.to_string()),
        None => Ok(Config::default()),
    }
}

/// Parses `--since`/`--until`: RFC 3339, Unix seconds, or an age (`90s`, `30m`, `2h`, `1d`).
pub fn parse_time(text: &str, now_ms: u64) -> Result<u64, String> {
    if let Ok(secs) = text.parse::<u64>() {
        return Ok(secs * 1000);
    }
    let units = [('s', 1u64), ('m', 60), ('h', 3600), ('d', 86400)];
    for (suffix, secs) in units {
        if let Some(n) = text
            .strip_suffix(suffix)
            .and_then(|n| n.parse::<u64>().ok())
        {
            return Ok(now_ms.saturating_sub(n * secs * 1000));
        }
    }
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map(|t| u64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(0))
        .map_err(|_| format!("`{text}`: expected RFC 3339 time, Unix seconds, or an age like 2h"))
}

/// Runs a control request: through the daemon if it runs, else directly.
pub fn control(config: &Config, request: Request) -> Result<Response, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        if let Some(response) = crate::control::call_daemon(&config.data_dir, &request)
            .await
            .map_err(|e| e.to_string())?
        {
            return Ok(response);
        }
        if !config.data_dir.exists() {
            return Err(format!(
                "{}: no data directory (has the gateway ever run with this configuration?)",
                config.data_dir.display()
            ));
        }
        let db = crate::daemon::open_db(config).map_err(|e| e.to_string())?;
        let (queue, _requests) =
            crate::queue::Queue::open(config, &db).map_err(|e| e.to_string())?;
        // The spool is the truth: bring the index up to date before answering.
        crate::queue::recover::reconcile(&queue).map_err(|e| e.to_string())?;
        let response = crate::control::execute(&queue, request, false).await;
        let _ = db.flush();
        Ok(response)
    })
}

/// Prints a control response for humans (or JSON); the exit code says if it worked.
pub fn print_response(response: &Response, json: bool) -> ExitCode {
    if json {
        match serde_json::to_string_pretty(response) {
            Ok(text) => println!("{text}"),
            Err(e) => eprintln!("{e}"),
        }
        return if matches!(response, Response::Error { .. }) {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        };
    }
    match response {
        Response::Entries { entries } => {
            if entries.is_empty() {
                println!("Queue is empty.");
            }
            for e in entries {
                println!(
                    "{}  {}  {} octets  from {}  attempts {}  next {}",
                    e.queue_id,
                    crate::util::iso8601_ms(e.received_at_ms),
                    e.size,
                    e.sender_text(),
                    e.attempts,
                    crate::util::iso8601_ms(e.next_attempt_ms)
                );
                for r in &e.recipients {
                    println!(
                        "    {:<40} {}",
                        r.recipient.address.to_string(),
                        describe_status(&r.status)
                    );
                }
            }
        }
        Response::Message { entry, headers } => {
            println!("Queue id:  {}", entry.queue_id);
            println!(
                "Received:  {}",
                crate::util::iso8601_ms(entry.received_at_ms)
            );
            println!("Sender:    {}", entry.sender_text());
            println!("Size:      {} octets", entry.size);
            println!("Attempts:  {}", entry.attempts);
            println!(
                "Next try:  {}",
                crate::util::iso8601_ms(entry.next_attempt_ms)
            );
            println!("Recipients:");
            for r in &entry.recipients {
                println!(
                    "    {:<40} {} (attempts {})",
                    r.recipient.address.to_string(),
                    describe_status(&r.status),
                    r.attempts
                );
            }
            println!("Headers:\n{headers}");
        }
        Response::Directory { entries } => {
            if entries.is_empty() {
                println!("No entries.");
            }
            for e in entries {
                let target = e
                    .domain
                    .as_ref()
                    .map_or_else(|| e.addresses.join(", "), |d| format!("domain {d}"));
                println!(
                    "{}  {:<7} {:<9} {}  valid {} .. {}{}  {}",
                    e.fingerprint.get(..16).unwrap_or(&e.fingerprint),
                    format!("{:?}", e.kind).to_lowercase(),
                    format!("{:?}", e.trust).to_lowercase(),
                    target,
                    crate::util::iso8601_ms(e.not_before_ms),
                    crate::util::iso8601_ms(e.not_after_ms),
                    if e.can_encrypt {
                        ""
                    } else {
                        " (cannot encrypt)"
                    },
                    e.source
                );
                if !e.data.is_empty() {
                    use base64::Engine as _;
                    println!("    subject: {}", e.subject);
                    println!("    sha256:  {}", e.fingerprint);
                    println!(
                        "    seen:    {} .. {}",
                        crate::util::iso8601_ms(e.first_seen_ms),
                        crate::util::iso8601_ms(e.last_seen_ms)
                    );
                    let b64 = base64::engine::general_purpose::STANDARD.encode(&e.data);
                    let label = match e.kind {
                        crate::directory::Kind::Smime => "CERTIFICATE",
                        crate::directory::Kind::Openpgp => "PGP PUBLIC KEY BLOCK",
                    };
                    println!("-----BEGIN {label}-----");
                    if e.kind == crate::directory::Kind::Openpgp {
                        println!();
                    }
                    for chunk in b64.as_bytes().chunks(64) {
                        println!("{}", String::from_utf8_lossy(chunk));
                    }
                    println!("-----END {label}-----");
                }
            }
        }
        Response::Events { events } => {
            if events.is_empty() {
                println!("No events match.");
            }
            for e in events {
                println!(
                    "{}  {:<8} {:<3} {:<9} {}  {} -> {}  [{}] {}",
                    crate::util::iso8601_ms(e.time_ms),
                    e.node,
                    format!("{:?}", e.direction).to_lowercase(),
                    format!("{:?}", e.kind).to_lowercase(),
                    e.queue_id,
                    e.sender,
                    e.recipient,
                    e.remote,
                    e.detail
                );
            }
        }
        Response::Done { text } => println!("{text}"),
        Response::Error { error } => {
            eprintln!("error: {error}");
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}

fn describe_status(status: &crate::queue::state::RecipientStatus) -> String {
    use crate::queue::state::RecipientStatus::*;
    match status {
        Scheduled => "scheduled".into(),
        Deferred { reason } => format!("deferred: {reason}"),
        Delivered { reply } => format!("delivered: {reply}"),
        Bounced { reason } => format!("bounced: {reason}"),
        Deleted => "deleted".into(),
        Held { reason, since_ms } => format!(
            "held since {}: {reason}",
            crate::util::iso8601_ms(*since_ms)
        ),
        Quarantined { reason, since_ms } => format!(
            "quarantined since {}: {reason}",
            crate::util::iso8601_ms(*since_ms)
        ),
    }
}

/// Builds the tracking query from the command line.
pub fn track_query(args: &TrackArgs) -> Result<Query, String> {
    let now = crate::envelope::now_ms();
    Ok(Query {
        sender: args.sender.clone(),
        recipient: args.recipient.clone(),
        queue_id: args.id.clone(),
        since_ms: args
            .since
            .as_deref()
            .map(|t| parse_time(t, now))
            .transpose()?,
        until_ms: args
            .until
            .as_deref()
            .map(|t| parse_time(t, now))
            .transpose()?,
        limit: Some(args.limit),
    })
}

/// `sealgate policy explain`: decisions for a message read from stdin.
pub fn policy_explain(config: &Config, args: &ExplainArgs) -> ExitCode {
    use std::io::Read;
    let policy = match config.policy() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("sealgate: {e}");
            return ExitCode::from(2);
        }
    };
    let mut content = Vec::new();
    let limit = config.smtp.max_message_size;
    if let Err(e) = std::io::stdin()
        .take(limit.saturating_add(1))
        .read_to_end(&mut content)
    {
        eprintln!("sealgate: reading the message: {e}");
        return ExitCode::FAILURE;
    }
    if u64::try_from(content.len()).unwrap_or(u64::MAX) > limit {
        eprintln!("sealgate: the message is larger than smtp.max_message_size ({limit})");
        return ExitCode::from(2);
    }
    let headers = mail_parser::MessageParser::default().parse_headers(&content[..]);
    let header_addresses = |which: &[&str]| -> Vec<String> {
        let Some(message) = headers.as_ref() else {
            return Vec::new();
        };
        which
            .iter()
            .filter_map(|name| message.header(*name))
            .filter_map(|value| value.as_address())
            .flat_map(|list| list.iter())
            .filter_map(|a| a.address())
            .map(str::to_owned)
            .collect()
    };
    let sender = args
        .sender
        .clone()
        .or_else(|| header_addresses(&["From"]).into_iter().next())
        .unwrap_or_default();
    let recipients = if args.recipients.is_empty() {
        header_addresses(&["To", "Cc", "Bcc"])
    } else {
        args.recipients.clone()
    };
    if recipients.is_empty() {
        eprintln!("sealgate: no recipients: give --to or a message with To/Cc headers");
        return ExitCode::from(2);
    }
    let expander = crate::expand::Expander::new(config);
    let mut sender_groups = expander.local_groups_of(&sender.to_ascii_lowercase());
    if let Some(ldap) = &config.ldap {
        let found = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())
            .and_then(|rt| {
                rt.block_on(async {
                    let mut session = crate::expand::ldap::Session::connect(ldap).await?;
                    let groups = session.groups_of(&sender.to_ascii_lowercase()).await;
                    session.close().await;
                    groups
                })
                .map_err(|e| e.to_string())
            });
        match found {
            Ok(groups) => sender_groups.extend(groups),
            Err(e) => eprintln!("sealgate: sender groups from LDAP not available: {e}"),
        }
    }
    let origin = crate::pipeline::decide::Origin {
        sender: &sender,
        client_ip: Some(args.client_ip),
        sender_groups: &sender_groups,
        arrived_encrypted: None,
    };
    match crate::pipeline::decide::decide_all(config, &policy, &content, &origin, &recipients) {
        Ok((facts, decisions)) => {
            if args.json {
                let out = serde_json::json!({ "facts": facts, "decisions": decisions });
                println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
            } else {
                println!(
                    "sender {} ({}), subject {:?}, {} attachment(s){}",
                    if sender.is_empty() { "<>" } else { &sender },
                    if facts.sender_internal {
                        "internal"
                    } else {
                        "external"
                    },
                    facts.subject,
                    facts.attachments.len(),
                    facts
                        .encrypted_for_gateway
                        .map(|w| format!(", arrived encrypted ({w:?})"))
                        .unwrap_or_default()
                );
                for d in &decisions {
                    println!("{}", d.explain());
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("sealgate: the message cannot be processed: {e}");
            ExitCode::from(65)
        }
    }
}

/// The control request for a `sealgate directory` verb (reads the file to import).
pub fn directory_request(cmd: DirectoryCommand) -> Result<(Request, bool), String> {
    use base64::Engine as _;
    use std::io::Read;
    Ok(match cmd {
        DirectoryCommand::Import { file, domain } => {
            let mut bytes = Vec::new();
            let limit = 512 * 1024;
            let read = if file.as_os_str() == "-" {
                std::io::stdin().take(limit + 1).read_to_end(&mut bytes)
            } else {
                std::fs::File::open(&file).and_then(|f| f.take(limit + 1).read_to_end(&mut bytes))
            };
            read.map_err(|e| format!("{}: {e}", file.display()))?;
            if bytes.len() as u64 > limit {
                return Err(format!("{}: larger than {limit} octets", file.display()));
            }
            (
                Request::DirectoryImport {
                    data: base64::engine::general_purpose::STANDARD.encode(&bytes),
                    domain,
                },
                false,
            )
        }
        DirectoryCommand::List { json } => (Request::DirectoryList, json),
        DirectoryCommand::Show { key } => (Request::DirectoryShow { key }, false),
        DirectoryCommand::Remove { fingerprint } => {
            (Request::DirectoryRemove { fingerprint }, false)
        }
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn time_forms() {
        assert_eq!(parse_time("100", 0).unwrap(), 100_000);
        assert_eq!(
            parse_time("2h", 10_000_000).unwrap(),
            10_000_000 - 7_200_000
        );
        assert_eq!(parse_time("1970-01-01T00:01:00Z", 0).unwrap(), 60_000);
        assert!(parse_time("yesterday", 0).is_err());
    }
}
