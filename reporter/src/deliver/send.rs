//! Sending: one round of a delivery over each claimed channel, email on a
//! blocking thread and chat through the webhook client, both retried with
//! backoff within the round; the outcome goes to [`super::record`].

use lettre::Message;

use super::ledger::LedgerEntry;
use super::produce::Outgoing;
use super::record::Sending;
use super::{target_key, Channel, Runner, Target};
use crate::config::Secret;
use crate::report::mail::{self, MailError};
use crate::report::webhook::{self, WebhookError};

/// How one channel's round went.
pub(super) struct Round {
    pub(super) attempts: u32,
    pub(super) result: Result<(), (String, Settle)>,
}

/// What a failed round leaves to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Settle {
    /// Try again next round (until [`Settings::max_rounds`](super::Settings::max_rounds)).
    Retry,
    /// Trying again would fail the same way.
    Permanent,
    /// It may have arrived (a timeout after it was sent): not resent
    /// blindly; recorded [`LedgerStatus::Unknown`](super::ledger::LedgerStatus::Unknown).
    Unknown,
}

impl Settle {
    fn permanent_if(permanent: bool) -> Settle {
        if permanent {
            Settle::Permanent
        } else {
            Settle::Retry
        }
    }
}

impl Runner {
    /// Sends `outgoing` over every channel in `claimed`, concurrently, and
    /// records each outcome in the ledger.
    pub(super) async fn send_and_record(
        &self,
        target: &Target,
        claimed: &[Channel],
        outgoing: Result<Outgoing, String>,
        sending: &Sending<'_>,
    ) -> Vec<LedgerEntry> {
        let rounds: Vec<(Channel, Round)> = match outgoing {
            Err(error) => claimed
                .iter()
                .map(|&c| {
                    let result = Err((error.clone(), Settle::Retry));
                    (c, Round { attempts: 0, result })
                })
                .collect(),
            Ok(outgoing) => {
                let email = claimed
                    .contains(&Channel::Email)
                    .then(|| self.send_email(outgoing.email));
                let chat = claimed.contains(&Channel::Chat).then(|| {
                    let delivery = (sending.kind, target.name.as_str(), sending.period);
                    self.send_chat(target.webhook.clone(), outgoing.chat, delivery)
                });
                let (email, chat) = tokio::join!(maybe(email), maybe(chat));
                email
                    .map(|r| (Channel::Email, r))
                    .into_iter()
                    .chain(chat.map(|r| (Channel::Chat, r)))
                    .collect()
            }
        };
        self.record(target, rounds, sending)
    }

    async fn send_email(&self, message: Option<Message>) -> Round {
        let (Some(smtp), Some(message)) = (self.inner.settings.smtp.clone(), message) else {
            return Round {
                attempts: 0,
                result: Err((
                    "no email was made (or no [smtp] is configured)".to_owned(),
                    Settle::Permanent,
                )),
            };
        };
        let retry = self.inner.settings.mail_retry;
        let sent = tokio::task::spawn_blocking(move || mail::send(&smtp, &message, retry)).await;
        match sent {
            Ok(Ok(attempts)) => Round {
                attempts,
                result: Ok(()),
            },
            Ok(Err(error)) => {
                let (attempts, permanent) = match &error {
                    MailError::Send {
                        attempts, permanent, ..
                    } => (*attempts, *permanent),
                    MailError::Address { .. } | MailError::NoRecipients | MailError::Build(_) => (0, true),
                    _ => (0, false),
                };
                Round {
                    attempts,
                    result: Err((error.to_string(), Settle::permanent_if(permanent))),
                }
            }
            Err(join) => Round {
                attempts: 0,
                result: Err((format!("the sending thread failed: {join}"), Settle::Retry)),
            },
        }
    }

    /// Posts the chat messages of delivery `(kind, team, period)`, keyed
    /// by it ([`webhook::idempotency_key`]).
    async fn send_chat(
        &self,
        url: Option<Secret>,
        payloads: Vec<serde_json::Value>,
        (kind, team, period): (&str, &str, &str),
    ) -> Round {
        let Some(url) = url else {
            return Round {
                attempts: 0,
                result: Err(("no webhook URL".to_owned(), Settle::Permanent)),
            };
        };
        if payloads.is_empty() {
            return Round {
                attempts: 0,
                result: Err(("no chat message was made".to_owned(), Settle::Permanent)),
            };
        }
        let target = target_key(team, Channel::Chat);
        let key = webhook::idempotency_key(kind, &target, period, url.expose());
        let retry = self.inner.settings.webhook_retry;
        match webhook::post_json_keyed(url.expose(), &payloads, retry, Some(&key)).await {
            Ok(delivery) => Round {
                attempts: delivery.attempts,
                result: Ok(()),
            },
            Err(error) => {
                let (attempts, settle) = match &error {
                    WebhookError::GaveUp { attempts, .. } => (*attempts, Settle::Retry),
                    WebhookError::Unknown { attempts, .. } => (*attempts, Settle::Unknown),
                    WebhookError::Refused { .. } | WebhookError::InvalidUrl(_) => (1, Settle::Permanent),
                    WebhookError::Client(_) => (0, Settle::Retry),
                };
                Round {
                    attempts,
                    result: Err((error.to_string(), settle)),
                }
            }
        }
    }
}

async fn maybe<F: std::future::Future>(future: Option<F>) -> Option<F::Output> {
    match future {
        Some(future) => Some(future.await),
        None => None,
    }
}
