//! Building email messages (MIME): plain text, or text with an HTML
//! alternative, from a sender to recipients.

use lettre::message::{Mailbox, MultiPart};
use lettre::Message;

use crate::report::mail::MailError;

/// A plain-text email from `from` to `to`.
pub fn plain_message(from: &str, to: &[String], subject: &str, text: &str) -> Result<Message, MailError> {
    html_message(from, to, subject, text, None)
}

/// An email with a text part and, when given, an HTML alternative.
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
    let parse = |role: &'static str, address: &str| {
        address.parse::<Mailbox>().map_err(|e| MailError::Address {
            role,
            address: address.to_owned(),
            reason: e.to_string(),
        })
    };
    let mut builder = Message::builder().from(parse("sender", from)?).subject(subject);
    for address in to {
        builder = builder.to(parse("recipient", address)?);
    }
    Ok(match html {
        Some(html) => builder.multipart(MultiPart::alternative_plain_html(text.to_owned(), html))?,
        None => builder.body(text.to_owned())?,
    })
}
