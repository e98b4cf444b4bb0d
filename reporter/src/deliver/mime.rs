//! Building email messages (MIME): plain text, or text with an HTML
//! alternative, from a sender to recipients.

use lettre::message::MultiPart;
use lettre::Message;

use crate::report::mail::{mailbox, MailError};

/// A plain-text email from `from` to `to`.
pub fn plain_message(from: &str, to: &[String], subject: &str, text: &str) -> Result<Message, MailError> {
    html_message(from, to, subject, text, None)
}

/// An email with a text part and, when given, an HTML alternative, with a
/// `Message-ID` of its own (as the weekly report's), which mail clients
/// thread and deduplicate by.
pub fn html_message(
    from: &str,
    to: &[String],
    subject: &str,
    text: &str,
    html: Option<String>,
) -> Result<Message, MailError> {
    if to.is_empty() {
        return Err(MailError::NoRecipients);
    }
    let mut builder = Message::builder()
        .from(mailbox("sender", from)?)
        .subject(subject)
        .message_id(None);
    for address in to {
        builder = builder.to(mailbox("recipient", address)?);
    }
    Ok(match html {
        Some(html) => builder.multipart(MultiPart::alternative_plain_html(text.to_owned(), html))?,
        None => builder.body(text.to_owned())?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The header's value, unfolded.
    fn header(message: &Message, name: &str) -> Option<String> {
        let raw = String::from_utf8(message.formatted()).unwrap();
        let head = raw.split("\r\n\r\n").next().unwrap().replace("\r\n ", " ");
        head.lines()
            .find_map(|line| line.strip_prefix(&format!("{name}: ")).map(str::to_owned))
    }

    #[test]
    fn digest_and_alert_emails_carry_a_message_id_each() {
        let to = ["dev@example.com".to_owned()];
        let digest = html_message(
            "kuroko@example.com",
            &to,
            "Errors on 2026-12-06",
            "text",
            Some("<p>html</p>".into()),
        );
        let alert = plain_message("kuroko@example.com", &to, "checkout slow", "text");
        let (digest, alert) = (digest.unwrap(), alert.unwrap());
        let ids: Vec<String> = [&digest, &alert]
            .iter()
            .map(|m| header(m, "Message-ID").expect("a Message-ID header"))
            .collect();
        assert!(
            ids.iter()
                .all(|id| id.starts_with('<') && id.ends_with('>') && id.contains('@')),
            "{ids:?}"
        );
        assert_ne!(ids[0], ids[1], "each message its own");
    }

    #[test]
    fn a_bad_address_says_which_role_it_had() {
        let err = plain_message("not an address", &["dev@example.com".to_owned()], "s", "t").unwrap_err();
        assert!(err.to_string().contains("sender"), "{err}");
    }
}
