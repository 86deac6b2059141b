//! What the portal shows of a stored message and what a reply looks
//! like: the summary taken when the message is stored, the view (plain
//! text; HTML sanitised with ammonia, no remote images), attachments, and
//! the reply's subject (the reply itself: [`super::outgoing`]).
//!
//! Trusts: nothing in the message. The HTML that leaves here is shown only
//! in a sandboxed frame under its own strict policy (`webui::portal`), so
//! the sanitiser is the second wall, not the only one.

use mail_parser::{MessageParser, MimeHeaders};

use sealgate_api::portal::{AttachmentData, AttachmentInfo};

use super::store::Summary;

/// The summary and the number of attachments of a message about to be stored.
pub fn summarise(content: &[u8], envelope_sender: &str) -> (Summary, usize) {
    let Some(message) = MessageParser::default().parse(content) else {
        return (
            Summary {
                sender: envelope_sender.to_owned(),
                from: envelope_sender.to_owned(),
                ..Summary::default()
            },
            0,
        );
    };
    let from = message
        .from()
        .and_then(|a| a.first())
        .map(|a| match (a.name(), a.address()) {
            (Some(n), Some(addr)) => format!("{n} <{addr}>"),
            (None, Some(addr)) => addr.to_owned(),
            (Some(n), None) => n.to_owned(),
            (None, None) => String::new(),
        })
        .filter(|f| !f.is_empty())
        .unwrap_or_else(|| envelope_sender.to_owned());
    (
        Summary {
            from,
            sender: envelope_sender.to_owned(),
            subject: message.subject().unwrap_or_default().to_owned(),
            message_id: message.message_id().map(|m| format!("<{m}>")),
        },
        message.attachment_count(),
    )
}

/// The body of a message for reading: (to, date, text, whether there is
/// HTML and whether that HTML has images, attachments). The HTML itself
/// is [`html`]'s, for the sandboxed frame only.
pub struct Body {
    pub to: String,
    pub date: String,
    pub text: String,
    pub html: bool,
    pub remote_images: bool,
    pub attachments: Vec<AttachmentInfo>,
}

/// Whether the images a message's HTML loads from the Internet are shown:
/// blocked unless the reader asks for them on that message (loading them
/// tells their server when and from where the message is read).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Images {
    Blocked,
    Shown,
}

/// HTML as the portal shows it: no script, no styles that load, links
/// open nothing here, and images only over HTTPS and only when `images`
/// is [`Images::Shown`] (otherwise every `img` is removed).
pub fn sanitise(html: &str, images: Images) -> String {
    let mut builder = ammonia::Builder::default();
    builder
        .url_schemes(["http", "https", "mailto"].into_iter().collect())
        // A "relative" URL is what a browser may read as a scheme after
        // removing tabs and line breaks (`java\tscript:`): mail has no
        // base to be relative to, so none is kept.
        .url_relative(ammonia::UrlRelative::Deny)
        .link_rel(Some("noopener noreferrer nofollow"));
    match images {
        Images::Blocked => {
            builder.rm_tags(["img"]);
        }
        Images::Shown => {
            builder.attribute_filter(|element, attribute, value| {
                let https = value
                    .trim_start()
                    .get(..8)
                    .is_some_and(|s| s.eq_ignore_ascii_case("https://"));
                (element != "img" || attribute != "src" || https).then_some(value.into())
            });
        }
    }
    builder.clean(html).to_string()
}

/// The HTML body of a message (never plain text made into HTML), as
/// [`sanitise`] leaves it; `None` when the message has no HTML part.
pub fn html(content: &[u8], images: Images) -> Option<String> {
    let message = MessageParser::default().parse(content)?;
    html_part(&message).map(|h| sanitise(h, images))
}

/// The message's first HTML body part, if it is HTML (mail-parser lists a
/// plain text part among the HTML bodies too, and would convert it).
fn html_part<'m>(message: &'m mail_parser::Message<'_>) -> Option<&'m str> {
    match &message.html_part(0)?.body {
        mail_parser::PartType::Html(h) => Some(h.as_ref()),
        _ => None,
    }
}

/// Whether `html` has an `img` element (in any case): the page then offers
/// to show the images. A hint only; [`sanitise`] decides what loads.
fn has_images(html: &str) -> bool {
    html.as_bytes()
        .windows(4)
        .any(|w| w.eq_ignore_ascii_case(b"<img"))
}

/// Reads the stored message.
pub fn body(content: &[u8]) -> Body {
    let Some(message) = MessageParser::default().parse(content) else {
        return Body {
            to: String::new(),
            date: String::new(),
            text: String::from_utf8_lossy(content).into_owned(),
            html: false,
            remote_images: false,
            attachments: Vec::new(),
        };
    };
    let to = message
        .to()
        .map(|list| {
            list.iter()
                .filter_map(|a| a.address())
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    let date = message.date().map(|d| d.to_rfc822()).unwrap_or_default();
    let html = html_part(&message);
    let text = message.body_text(0).unwrap_or_default().into_owned();
    let attachments = message
        .attachments()
        .enumerate()
        .map(|(index, part)| AttachmentInfo {
            index,
            name: attachment_name(part, index),
            content_type: content_type(part),
            size: part.contents().len() as u64,
        })
        .collect();
    Body {
        to,
        date,
        text,
        html: html.is_some(),
        remote_images: html.is_some_and(has_images),
        attachments,
    }
}

fn attachment_name(part: &mail_parser::MessagePart<'_>, index: usize) -> String {
    part.attachment_name()
        .map(|n| {
            n.chars()
                .filter(|c| !c.is_control() && !matches!(c, '/' | '\\' | '"'))
                .collect::<String>()
        })
        .filter(|n| !n.trim().is_empty())
        .unwrap_or_else(|| format!("attachment-{}", index + 1))
}

fn content_type(part: &mail_parser::MessagePart<'_>) -> String {
    part.content_type()
        .map(|ct| match ct.subtype() {
            Some(sub) => format!("{}/{sub}", ct.ctype()),
            None => ct.ctype().to_string(),
        })
        .unwrap_or_else(|| "application/octet-stream".to_owned())
}

/// Attachment `index` of the stored message.
pub fn attachment(content: &[u8], index: usize) -> Option<AttachmentData> {
    let message = MessageParser::default().parse(content)?;
    let part = message.attachment(u32::try_from(index).ok()?)?;
    Some(AttachmentData {
        name: attachment_name(part, index),
        content_type: content_type(part),
        bytes: part.contents().to_vec(),
    })
}

/// The To and Cc addresses of a stored message (for reply-all), as written.
pub fn recipients(content: &[u8]) -> Vec<String> {
    let Some(message) = MessageParser::default().parse(content) else {
        return Vec::new();
    };
    [message.to(), message.cc()]
        .into_iter()
        .flatten()
        .flat_map(|list| list.iter().filter_map(|a| a.address().map(str::to_owned)))
        .collect()
}

/// A reply's subject: `Re: ` before the original's, once.
pub fn reply_subject(original: &str) -> String {
    if original.to_ascii_lowercase().starts_with("re:") {
        original.to_owned()
    } else {
        format!("Re: {original}")
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const MAIL: &[u8] = b"From: Alice <alice@example.org>\r\nTo: dan@ext.example\r\nSubject: Numbers\r\n\
Message-ID: <m1@example.org>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n\
--b\r\nContent-Type: text/html\r\n\r\n<p onclick=\"x()\">Hi<script>alert(1)</script><img src=\"https://track.example/p.gif\"></p>\r\n\
--b\r\nContent-Type: application/pdf; name=\"r.pdf\"\r\nContent-Disposition: attachment; filename=\"../r.pdf\"\r\n\
Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n--b--\r\n";

    #[test]
    fn html_is_sanitised_and_attachments_read() {
        let (summary, n) = summarise(MAIL, "alice@example.org");
        assert_eq!(summary.from, "Alice <alice@example.org>");
        assert_eq!(summary.message_id.as_deref(), Some("<m1@example.org>"));
        assert_eq!(n, 1);
        let b = body(MAIL);
        assert!(b.html && b.remote_images);
        let html = html(MAIL, Images::Blocked).unwrap();
        assert!(html.contains("Hi"), "{html}");
        for bad in ["script", "onclick", "img", "track.example"] {
            assert!(!html.contains(bad), "{html}");
        }
        assert_eq!(b.attachments.len(), 1);
        let a = attachment(MAIL, 0).unwrap();
        assert_eq!(a.name, "..r.pdf");
        assert_eq!(a.bytes, b"%PDF-1.4\n");
        assert!(attachment(MAIL, 1).is_none());
    }

    #[test]
    fn no_url_a_browser_could_run_survives() {
        for href in [
            "javascript:alert(1)",
            " javascript:alert(1)",
            "java\tscript:alert(1)",
            "java&#x09;script:alert(1)",
            "jav&#x0A;ascript:alert(1)",
            "data:text/html,<script>alert(1)</script>",
            "vbscript:msgbox(1)",
            "/relative",
        ] {
            let out = sanitise(&format!("<a href=\"{href}\">x</a>"), Images::Shown);
            assert!(!out.contains("href"), "{href:?} → {out}");
        }
        assert!(
            sanitise("<a href=\"https://example.org/\">x</a>", Images::Blocked)
                .contains("href=\"https://example.org/\"")
        );
    }

    /// A reply as the portal builds it ([`super::super::outgoing::build`]).
    fn reply_to(
        from: &str,
        summary: &Summary,
        (to, cc): (&[String], &[String]),
        text: &str,
        message_id: &str,
    ) -> Vec<u8> {
        super::super::outgoing::build(&super::super::outgoing::Message {
            hostname: "gw.example",
            from,
            to,
            cc,
            subject: &reply_subject(&summary.subject),
            parent: summary.message_id.as_deref(),
            text,
            attachments: &[],
            message_id,
        })
    }

    #[test]
    fn remote_images_load_only_when_shown_and_only_over_https() {
        let mail = b"From: a@example.org\r\nSubject: s\r\nContent-Type: text/html\r\n\r\n\
<p>x<img src=\"https://img.example/a.png\" alt=\"logo\"><IMG SRC=\"http://img.example/b.png\">\
<img src=\"data:image/png;base64,AAAA\"><img src=\" javascript:alert(1)\"></p>\r\n";
        assert!(body(mail).remote_images);
        let blocked = html(mail, Images::Blocked).unwrap();
        assert!(!blocked.contains("img"), "{blocked}");
        let shown = html(mail, Images::Shown).unwrap();
        assert!(
            shown.contains("src=\"https://img.example/a.png\""),
            "{shown}"
        );
        for bad in ["http://", "data:", "javascript"] {
            assert!(!shown.contains(bad), "{shown}");
        }
    }

    #[test]
    fn plain_text_is_never_made_into_html() {
        let mail = b"From: a@example.org\r\nSubject: s\r\n\r\n<img src=x> & text\r\n";
        let b = body(mail);
        assert!(!b.html && !b.remote_images);
        assert_eq!(b.text, "<img src=x> & text\r\n");
        assert_eq!(html(mail, Images::Shown), None);
    }

    #[test]
    fn reply_keeps_the_thread() {
        let (summary, _) = summarise(MAIL, "alice@example.org");
        let to = [summary.sender.clone()];
        let r = reply_to("dan@ext.example", &summary, (&to, &[]), "Thanks", "r1");
        let parsed = MessageParser::default().parse(&r).unwrap();
        assert_eq!(parsed.subject(), Some("Re: Numbers"));
        assert_eq!(parsed.in_reply_to().as_text(), Some("m1@example.org"));
        assert_eq!(parsed.body_text(0).unwrap(), "Thanks");
        assert!(String::from_utf8_lossy(&r).contains("To: <alice@example.org>"));
    }

    #[test]
    fn reply_all_names_to_and_cc_and_keeps_the_thread() {
        let mail = b"From: carol@example.org\r\nTo: Dan <dan@ext.example>\r\n\
Cc: alice@example.org, Bob <bob@example.org>\r\nSubject: Plan\r\nMessage-ID: <p1@example.org>\r\n\r\nx\r\n";
        assert_eq!(
            recipients(mail),
            ["dan@ext.example", "alice@example.org", "bob@example.org"]
        );
        let (summary, _) = summarise(mail, "carol@example.org");
        let r = reply_to(
            "dan@ext.example",
            &summary,
            (
                &["carol@example.org".to_owned()],
                &["alice@example.org".to_owned(), "bob@example.org".to_owned()],
            ),
            "Agreed",
            "r2",
        );
        let text = String::from_utf8_lossy(&r);
        assert!(text.contains("To: <carol@example.org>\r\n"), "{text}");
        assert!(
            text.contains("Cc: <alice@example.org>, <bob@example.org>\r\n"),
            "{text}"
        );
        let parsed = MessageParser::default().parse(&r).unwrap();
        assert_eq!(parsed.in_reply_to().as_text(), Some("p1@example.org"));
    }
}
