//! The mail the portal sends: the notification that a message waits
//! (plain text and HTML, English or German, or the administrator's own
//! text from `[portal] notification_text`), the one-time code (with its
//! reset link) that proves control of an address, and the read receipt
//! to a sender.
//!
//! None carries anything of a message's body (a receipt names its
//! subject, to its own sender), and all leave as gateway notices (null
//! sender, no policy decision). The notification's link is the portal's
//! address with the recipient's address to fill the login form: no
//! credential. The code mail's reset link is one, like the code: once,
//! for 15 minutes.
//!
//! Trusts: the settings (the template) and the envelope sender.

use sealgate_api::settings::portal::PortalSettings;

use super::accounts::NewCode;
use crate::address::Address;
use crate::config::Config;
use crate::envelope::Envelope;

/// The languages the built-in texts come in.
pub const LANGUAGES: &[&str] = &["en", "de"];

struct Texts {
    subject: &'static str,
    body: &'static str,
    /// The body of a push notification (the message is attached).
    push_body: &'static str,
    code_subject: &'static str,
    code_body: &'static str,
    receipt_subject: &'static str,
    receipt_body: &'static str,
}

const EN: Texts = Texts {
    subject: "Secure message from {sender}",
    body: "Hello,\r\n\r\n\
           {sender} has sent you a message that must reach you encrypted.\r\n\
           It waits for you in the secure web mail portal:\r\n\r\n\
           \x20 {link}\r\n\r\n\
           On your first visit you confirm your address with a code we send\r\n\
           you and choose a password. The message is kept for {days} days.\r\n\
           This notice contains nothing of the message itself.\r\n",
    push_body: "Hello,\r\n\r\n\
                {sender} has sent you a message that must reach you encrypted.\r\n\
                It is attached to this mail, encrypted: open the attachment\r\n\
                secure-message.html in your web browser and choose \"Open the message\".\r\n\
                You then sign in at the secure web mail portal:\r\n\r\n\
                \x20 {link}\r\n\r\n\
                On your first visit you confirm your address with a code we send\r\n\
                you and choose a password. Keep this mail: the gateway does not keep\r\n\
                the message, and it can be opened for {days} days.\r\n",
    code_subject: "Your code for the secure web mail portal",
    code_body: "Hello,\r\n\r\n\
                your code for the secure web mail portal is:\r\n\r\n\
                \x20 {code}\r\n\r\n\
                Or open this link to set your password (a new one, if you\r\n\
                forgot it):\r\n\r\n\
                \x20 {link}\r\n\r\n\
                Code and link are valid for 15 minutes and work once. If you\r\n\
                did not ask for them, ignore this message.\r\n",
    receipt_subject: "Read: {subject}",
    receipt_body: "Hello,\r\n\r\n\
                   your message \"{subject}\" to {recipient}, kept for them in the\r\n\
                   secure web mail portal since {stored}, was opened by them on\r\n\
                   {read}.\r\n",
};

const DE: Texts = Texts {
    subject: "Vertrauliche Nachricht von {sender}",
    body: "Guten Tag,\r\n\r\n\
           {sender} hat Ihnen eine Nachricht geschickt, die Sie nur verschlüsselt\r\n\
           erreichen darf. Sie liegt für Sie im sicheren Web-Mail-Portal bereit:\r\n\r\n\
           \x20 {link}\r\n\r\n\
           Beim ersten Besuch bestätigen Sie Ihre Adresse mit einem Code, den wir\r\n\
           Ihnen senden, und wählen ein Passwort. Die Nachricht wird {days} Tage\r\n\
           aufbewahrt. Diese Benachrichtigung enthält nichts von der Nachricht selbst.\r\n",
    push_body: "Guten Tag,\r\n\r\n\
                {sender} hat Ihnen eine Nachricht geschickt, die Sie nur verschlüsselt\r\n\
                erreichen darf. Sie ist dieser Mail verschlüsselt angehängt: öffnen Sie\r\n\
                den Anhang secure-message.html in Ihrem Browser und wählen Sie\r\n\
                \"Nachricht öffnen\". Dann melden Sie sich im sicheren Web-Mail-Portal an:\r\n\r\n\
                \x20 {link}\r\n\r\n\
                Beim ersten Besuch bestätigen Sie Ihre Adresse mit einem Code, den wir\r\n\
                Ihnen senden, und wählen ein Passwort. Bewahren Sie diese Mail auf: das\r\n\
                Gateway behält die Nachricht nicht; sie kann {days} Tage lang geöffnet werden.\r\n",
    code_subject: "Ihr Code für das sichere Web-Mail-Portal",
    code_body: "Guten Tag,\r\n\r\n\
                Ihr Code für das sichere Web-Mail-Portal lautet:\r\n\r\n\
                \x20 {code}\r\n\r\n\
                Oder öffnen Sie diesen Link, um Ihr Passwort festzulegen (ein neues,\r\n\
                wenn Sie es vergessen haben):\r\n\r\n\
                \x20 {link}\r\n\r\n\
                Code und Link gelten 15 Minuten und funktionieren einmal. Wenn Sie\r\n\
                sie nicht angefordert haben, beachten Sie diese Nachricht nicht.\r\n",
    receipt_subject: "Gelesen: {subject}",
    receipt_body: "Guten Tag,\r\n\r\n\
                   Ihre Nachricht \"{subject}\" an {recipient}, seit {stored} im sicheren\r\n\
                   Web-Mail-Portal für sie bereit, wurde am {read} von ihnen geöffnet.\r\n",
};

fn texts(language: &str) -> &'static Texts {
    match language {
        "de" => &DE,
        _ => &EN,
    }
}

/// The link in the notification: the portal with the address filled in.
pub fn link(settings: &PortalSettings, recipient: &str) -> String {
    let mut encoded = String::new();
    for b in recipient.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            encoded.push(char::from(b));
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    format!("{}/?address={encoded}", settings.url.trim_end_matches('/'))
}

fn fill(template: &str, sender: &str, recipient: &str, link: &str, days: u32) -> String {
    template
        .replace("{sender}", sender)
        .replace("{recipient}", recipient)
        .replace("{link}", link)
        .replace("{days}", &days.to_string())
}

/// Escapes text for HTML.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// RFC 2047 for a header value that is not ASCII.
fn header_value(text: &str) -> String {
    use base64::Engine as _;
    let one_line: String = text.chars().filter(|c| !c.is_control()).collect();
    if one_line.is_ascii() {
        return one_line;
    }
    format!(
        "=?utf-8?b?{}?=",
        base64::engine::general_purpose::STANDARD.encode(one_line.as_bytes())
    )
}

fn from(config: &Config) -> String {
    config
        .portal
        .settings
        .from
        .clone()
        .unwrap_or_else(|| format!("postmaster@{}", config.hostname))
}

fn envelope(config: &Config, recipient: &Address, tag: String) -> Envelope {
    Envelope {
        gateway_notice: true,
        ..Envelope::from_gateway(recipient.clone(), &config.hostname, tag)
    }
}

fn head(config: &Config, recipient: &Address, subject: &str, tag: &str) -> String {
    format!(
        "From: Secure web mail <{}>\r\nTo: <{recipient}>\r\nSubject: {}\r\nDate: {}\r\n\
         Message-ID: <{tag}.{}@{}>\r\nAuto-Submitted: auto-generated\r\nMIME-Version: 1.0\r\n",
        from(config),
        header_value(subject),
        crate::util::rfc5322_date_now(),
        crate::envelope::now_ms(),
        config.hostname,
    )
}

/// The notification that a message from `sender` waits for `recipient`,
/// in `language` (the recipient's choice) or else the domain's.
pub fn notification(
    config: &Config,
    sender: &str,
    recipient: &Address,
    queue_id: &str,
    language: Option<&str>,
) -> (Envelope, Vec<u8>) {
    let texts = texts(language_for(config, recipient, language));
    let body = config
        .portal
        .settings
        .notification_text
        .as_deref()
        .unwrap_or(texts.body);
    compose(config, sender, recipient, queue_id, texts, body, None)
}

/// The push notification: a text like [`notification`]'s (built in, in
/// `language` or else the domain's) and the sealed message as the
/// attachment `page` ([`super::push::page`]).
pub fn push_notification(
    config: &Config,
    sender: &str,
    recipient: &Address,
    queue_id: &str,
    language: &str,
    page: &str,
) -> (Envelope, Vec<u8>) {
    let texts = texts(language);
    compose(
        config,
        sender,
        recipient,
        queue_id,
        texts,
        texts.push_body,
        Some(page),
    )
}

/// The language a notification for `recipient` is written in: the
/// recipient's choice, else the domain's.
pub fn language_for<'a>(
    config: &'a Config,
    recipient: &Address,
    chosen: Option<&'a str>,
) -> &'a str {
    chosen.unwrap_or_else(|| {
        config
            .portal
            .settings
            .language_for(&recipient.domain_lower())
    })
}

/// A notification: text and HTML alternatives made from `body`, and
/// with push the sealed message's page as an attachment.
fn compose(
    config: &Config,
    sender: &str,
    recipient: &Address,
    queue_id: &str,
    texts: &Texts,
    body: &str,
    attachment: Option<&str>,
) -> (Envelope, Vec<u8>) {
    let settings = &config.portal.settings;
    let domain = recipient.domain_lower();
    let link = link(settings, &recipient.to_string());
    let days = settings.retention_for(&domain);
    let rcpt = recipient.to_string();
    let subject = fill(
        settings
            .notification_subject
            .as_deref()
            .unwrap_or(texts.subject),
        sender,
        &rcpt,
        &link,
        days,
    );
    let text = fill(body, sender, &rcpt, &link, days)
        .replace("\r\n", "\n")
        .replace('\n', "\r\n");
    // The HTML part is the text, escaped, with the link made a link.
    let escaped_link = escape(&link);
    let html_body = escape(&text).replace(
        &escaped_link,
        &format!("<a href=\"{escaped_link}\">{escaped_link}</a>"),
    );
    let html = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{}</title></head>\
         <body><pre style=\"font-family:sans-serif;white-space:pre-wrap\">{html_body}</pre></body></html>\r\n",
        escape(&subject)
    );
    let tag = format!("portal-{queue_id}");
    let boundary = format!("=_sealgate_portal_{}", crate::envelope::now_ms());
    let alternative = format!(
        "Content-Type: multipart/alternative; boundary=\"{boundary}\"\r\n\r\n\
         --{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n\
         --{boundary}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n\
         --{boundary}--\r\n",
        base64_lines(text.as_bytes()),
        base64_lines(html.as_bytes()),
    );
    let mut out = head(config, recipient, &subject, &tag);
    match attachment {
        None => out.push_str(&alternative),
        Some(page) => {
            let mixed = format!("{boundary}_m");
            out.push_str(&format!(
                "Content-Type: multipart/mixed; boundary=\"{mixed}\"\r\n\r\n\
                 --{mixed}\r\n{alternative}\
                 --{mixed}\r\nContent-Type: text/html; charset=utf-8; name=\"{name}\"\r\n\
                 Content-Disposition: attachment; filename=\"{name}\"\r\n\
                 Content-Transfer-Encoding: base64\r\n\r\n{}\r\n\
                 --{mixed}--\r\n",
                base64_lines(page.as_bytes()),
                name = super::push::FILE_NAME,
            ));
        }
    }
    (envelope(config, recipient, tag), out.into_bytes())
}

/// The reset link for a code mail's `token`: unlike the notification's
/// link, a credential (once, for the code's lifetime).
pub fn reset_link(settings: &PortalSettings, token: &str) -> String {
    format!("{}/reset/{token}", settings.url.trim_end_matches('/'))
}

/// The mail carrying a one-time code and its reset link to `recipient`,
/// in `language` (the recipient's choice) or else the domain's.
pub fn code_mail(
    config: &Config,
    recipient: &Address,
    code: &NewCode,
    language: Option<&str>,
) -> (Envelope, Vec<u8>) {
    let texts = texts(language_for(config, recipient, language));
    let tag = "portal-code".to_owned();
    let mut out = head(config, recipient, texts.code_subject, &tag);
    out.push_str(&format!(
        "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n",
        base64_lines(
            texts
                .code_body
                .replace("{code}", &code.code)
                .replace("{link}", &reset_link(&config.portal.settings, &code.link))
                .as_bytes()
        )
    ));
    (envelope(config, recipient, tag), out.into_bytes())
}

/// The receipt telling `sender` that `reader` opened the message with
/// `subject` (stored at `stored_ms`, Message-ID `message_id`) now, in the
/// portal's default language. A gateway notice like the others.
pub fn receipt(
    config: &Config,
    sender: &Address,
    reader: &str,
    subject: &str,
    message_id: Option<&str>,
    stored_ms: u64,
) -> (Envelope, Vec<u8>) {
    let texts = texts(&config.portal.settings.language);
    let fill = |t: &str| {
        t.replace("{subject}", subject)
            .replace("{recipient}", reader)
            .replace("{stored}", &crate::util::rfc5322_date_ms(stored_ms))
            .replace("{read}", &crate::util::rfc5322_date_now())
    };
    let tag = format!("portal-receipt-{}", crate::envelope::now_ms());
    let mut out = head(config, sender, &fill(texts.receipt_subject), &tag);
    // The receipt threads with the original in the sender's mail program.
    if let Some(id) = message_id.filter(|id| is_message_id(id)) {
        out.push_str(&format!("In-Reply-To: {id}\r\nReferences: {id}\r\n"));
    }
    out.push_str(&format!(
        "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n",
        base64_lines(fill(texts.receipt_body).as_bytes())
    ));
    (envelope(config, sender, tag), out.into_bytes())
}

/// A Message-ID fit to repeat in a header: `<…>`, printable, one line.
fn is_message_id(id: &str) -> bool {
    id.len() <= 998
        && id.starts_with('<')
        && id.ends_with('>')
        && id.bytes().all(|b| b.is_ascii_graphic())
}

fn base64_lines(bytes: &[u8]) -> String {
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::STANDARD.encode(bytes);
    encoded
        .as_bytes()
        .chunks(76)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join("\r\n")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use mail_parser::MimeHeaders;

    use super::*;

    fn decoded(mail: &[u8]) -> String {
        let parsed = mail_parser::MessageParser::default().parse(mail).unwrap();
        let mut out = String::new();
        out.push_str(parsed.subject().unwrap_or_default());
        out.push('\n');
        out.push_str(&parsed.body_text(0).unwrap_or_default());
        out.push('\n');
        out.push_str(&parsed.body_html(0).unwrap_or_default());
        out
    }

    #[test]
    fn notification_names_sender_links_portal_in_both_languages() {
        let mut config = Config::default();
        config.portal.settings.url = "https://portal.example.org/".into();
        config
            .portal
            .settings
            .domain_language
            .insert("ext.de".into(), "de".into());
        let rcpt = Address::parse("dan+x@ext.example").unwrap();
        let (env, mail) = notification(&config, "alice@example.org", &rcpt, "Q1", None);
        assert!(env.gateway_notice && env.sender.is_none());
        let text = decoded(&mail);
        assert!(
            text.contains("Secure message from alice@example.org"),
            "{text}"
        );
        assert!(text.contains("https://portal.example.org/?address=dan%2Bx%40ext.example"));
        assert!(
            text.contains("<a href=\"https://portal.example.org/?address=dan%2Bx%40ext.example\">")
        );
        assert!(text.contains("30 days"));
        let rcpt = Address::parse("eva@ext.de").unwrap();
        let text = decoded(&notification(&config, "<b>x</b>@example.org", &rcpt, "Q2", None).1);
        assert!(text.contains("Vertrauliche Nachricht"), "{text}");
        assert!(text.contains("&lt;b&gt;x&lt;/b&gt;@example.org"), "{text}");
        assert!(!text.contains("<b>x</b>@example.org</pre>"));
        // The recipient's own choice wins over the domain's.
        let text = decoded(&notification(&config, "alice@example.org", &rcpt, "Q3", Some("en")).1);
        assert!(
            text.contains("Secure message from alice@example.org"),
            "{text}"
        );
    }

    #[test]
    fn push_notification_carries_the_page_as_an_attachment_in_both_languages() {
        let config = Config::default();
        let rcpt = Address::parse("dan@ext.example").unwrap();
        let page = "<!doctype html><p>sealed</p>";
        let (env, mail) = push_notification(&config, "alice@example.org", &rcpt, "Q1", "en", page);
        assert!(env.gateway_notice);
        let parsed = mail_parser::MessageParser::default().parse(&mail).unwrap();
        assert_eq!(parsed.attachment_count(), 1);
        let attachment = parsed.attachment(0).unwrap();
        assert_eq!(attachment.attachment_name(), Some("secure-message.html"));
        assert_eq!(attachment.contents(), page.as_bytes());
        let text = decoded(&mail);
        assert!(text.contains("open the attachment"), "{text}");
        assert!(text.contains("Keep this mail"), "{text}");
        let text = decoded(&push_notification(&config, "a@example.org", &rcpt, "Q2", "de", page).1);
        assert!(text.contains("Anhang secure-message.html"), "{text}");
    }

    #[test]
    fn the_admin_template_replaces_the_text() {
        let mut config = Config::default();
        config.portal.settings.notification_text =
            Some("Mail from {sender} for {recipient}: {link} ({days} days)".into());
        let rcpt = Address::parse("dan@ext.example").unwrap();
        let text = decoded(&notification(&config, "alice@example.org", &rcpt, "Q1", None).1);
        assert!(text.contains(
            "Mail from alice@example.org for dan@ext.example: https://127.0.0.1:8444/?address=dan%40ext.example (30 days)"
        ), "{text}");
    }

    #[test]
    fn receipt_threads_with_the_original_and_carries_no_injected_header() {
        let config = Config::default();
        let sender = Address::parse("alice@example.org").unwrap();
        let (env, mail) = receipt(
            &config,
            &sender,
            "dan@ext.example",
            "Figures\r\nBcc: eve@evil.example",
            Some("<m1@example.org>"),
            1_700_000_000_000,
        );
        assert!(env.gateway_notice && env.sender.is_none());
        let parsed = mail_parser::MessageParser::default().parse(&mail).unwrap();
        assert_eq!(parsed.in_reply_to().as_text(), Some("m1@example.org"));
        assert!(parsed.header("Bcc").is_none());
        let text = decoded(&mail);
        assert!(text.starts_with("Read: Figures"), "{text}");
        assert!(text.contains("dan@ext.example"), "{text}");
        // An id that is no Message-ID is left out rather than repeated.
        let (_, mail) = receipt(&config, &sender, "d@x", "s", Some("<a>\r\nX: y"), 0);
        let parsed = mail_parser::MessageParser::default().parse(&mail).unwrap();
        assert!(parsed.in_reply_to().is_empty());
        assert!(parsed.header("X").is_none());
    }
}
