//! Posting JSON to a chat webhook (a Slack incoming webhook, or anything that
//! takes the same payloads), one message after another.
//!
//! A chat service that is down or busy must not lose a report, and a report
//! must not wait forever on it: each message is retried on what may pass later
//! (HTTP 429, honouring `Retry-After`; 408; 5xx; a connection that fails or
//! times out) with bounded exponential backoff, and given up after a fixed
//! number of attempts with a [`WebhookError`] that says why, for the caller to
//! record and show. What would be refused again (other 4xx: a revoked hook, a
//! malformed payload) fails at once, with the service's answer. Messages to one
//! URL are paced (Slack takes about one a second per channel).
//!
//! It is async: the reporter runs on tokio, and a delivery that sleeps
//! through backoff and pacing holds no thread, so the caller can spawn it and
//! nothing else waits on it. Each request itself is one blocking exchange
//! through `ureq` (the reporter's one HTTP client, which the ClickHouse store
//! uses too) on tokio's blocking pool, bounded by [`Retry::timeout`] per
//! phase (resolving, connecting, sending, waiting for the answer, reading
//! it). TLS is rustls with the system's trust store.
//!
//! A request that times out after it was sent may have been taken (a slow
//! receiver that posts the message and answers late): it is not resent
//! blindly, which could post the message twice, but ends the delivery with
//! [`WebhookError::Unknown`] for the caller to record as such. Every
//! message carries an `Idempotency-Key` header, the same for the same
//! message of the same delivery (see [`idempotency_key`]), so a receiver
//! that honours it takes a resend (`--force`) once.
//!
//! The webhook URL is a secret (its path is the credential), so it never
//! appears in logs or errors: only its scheme and host do. Redirects are not
//! followed.

use std::io::Read as _;
use std::time::Duration;

use serde_json::Value;
use ureq::http::header::{HeaderMap, CONTENT_TYPE, RETRY_AFTER};
use ureq::http::StatusCode;
use url::Url;

/// How much of a refusal's body is kept in the error, in characters.
const BODY_CHARS: usize = 500;

/// How hard to try, and how to pace messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retry {
    /// Attempts per message, the first included (at least 1).
    pub attempts: u32,
    /// The wait after the first failed attempt; doubled after each further one.
    pub initial_backoff: Duration,
    /// The longest wait between attempts; a `Retry-After` longer than this gives up.
    pub max_backoff: Duration,
    /// The wait between two messages to the same URL.
    pub pacing: Duration,
    /// The longest one request may take, connecting included.
    pub timeout: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            attempts: 5,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            pacing: Duration::from_secs(1),
            timeout: Duration::from_secs(15),
        }
    }
}

impl Retry {
    /// The wait after failed attempt `attempt` (1-based).
    fn backoff(&self, attempt: u32) -> Duration {
        let factor = 1u32 << attempt.saturating_sub(1).min(16);
        self.initial_backoff.saturating_mul(factor).min(self.max_backoff)
    }
}

/// What a delivery did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// The webhook's scheme and host, e.g. `https://hooks.slack.com`.
    pub target: String,
    /// Messages delivered: all of them.
    pub messages: usize,
    /// Requests made, retries included.
    pub attempts: u32,
}

/// Why a delivery stopped. Messages before `message` were delivered.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// The URL is not an absolute http(s) URL.
    #[error("the webhook URL is not a valid http(s) URL: {0}")]
    InvalidUrl(String),
    /// No HTTP client could be made (e.g. no TLS trust store).
    #[error("cannot start an HTTP client: {0}")]
    Client(String),
    /// The service refused a message in a way retrying would not change.
    #[error("{target} refused message {message} of {of} with HTTP {status}: {body}")]
    Refused {
        /// The webhook's scheme and host.
        target: String,
        /// The message refused, from 1.
        message: usize,
        /// Messages in the delivery.
        of: usize,
        /// The HTTP status.
        status: u16,
        /// The start of the service's answer.
        body: String,
    },
    /// A message was sent but not answered in time: it may have arrived,
    /// so it was not sent again.
    #[error("{target} did not answer message {message} of {of} in time after it was sent ({reason}): it may have arrived, so it was not sent again; check the channel, and resend with --force if it is missing (same Idempotency-Key)")]
    Unknown {
        /// The webhook's scheme and host.
        target: String,
        /// The message whose outcome is unknown, from 1.
        message: usize,
        /// Messages in the delivery.
        of: usize,
        /// Attempts made for it.
        attempts: u32,
        /// What the client said.
        reason: String,
    },
    /// A message still failed after every attempt.
    #[error("{target} did not take message {message} of {of} after {attempts} attempts: {last}")]
    GaveUp {
        /// The webhook's scheme and host.
        target: String,
        /// The message that failed, from 1.
        message: usize,
        /// Messages in the delivery.
        of: usize,
        /// Attempts made for it.
        attempts: u32,
        /// Why the last attempt failed.
        last: String,
    },
}

impl WebhookError {
    /// How many messages were delivered before the failure.
    pub fn delivered(&self) -> usize {
        match self {
            WebhookError::Refused { message, .. }
            | WebhookError::GaveUp { message, .. }
            | WebhookError::Unknown { message, .. } => message - 1,
            WebhookError::InvalidUrl(_) | WebhookError::Client(_) => 0,
        }
    }
}

/// What one attempt came to.
enum Outcome {
    Delivered,
    /// Sent, but not answered in time: it may have arrived.
    Unknown(String),
    /// Worth another attempt, after `after` if the service said so.
    Retry {
        reason: String,
        after: Option<Duration>,
    },
    Refused {
        status: StatusCode,
        body: String,
    },
}

/// The URL's scheme, host and port: what may be logged of a webhook.
pub(crate) fn redact(url: &Url) -> String {
    let host = url.host_str().unwrap_or("?");
    match url.port() {
        Some(port) => format!("{}://{host}:{port}", url.scheme()),
        None => format!("{}://{host}", url.scheme()),
    }
}

/// The `Idempotency-Key` of a delivery's messages (each adds `-<message>`):
/// the same for the same report, period and destination, across retries,
/// rounds, restarts and replicas.
pub(crate) fn idempotency_key(kind: &str, target: &str, period: &str, url: &str) -> String {
    let hash = crate::stable_hash::fnv1a64(&[kind.as_bytes(), target.as_bytes(), period.as_bytes(), url.as_bytes()]);
    format!("kuroko-{kind}-{period}-{hash:016x}")
}

/// Posts each payload as JSON to `url`, in order, paced by `retry.pacing`;
/// retries what may pass later and stops at the first message that fails.
pub async fn post_json(url: &str, payloads: &[Value], retry: Retry) -> Result<Delivery, WebhookError> {
    post_json_keyed(url, payloads, retry, None).await
}

/// [`post_json`], each message carrying `Idempotency-Key: <key>-<message>`
/// when `key` is given ([`idempotency_key`]).
pub(crate) async fn post_json_keyed(
    url: &str,
    payloads: &[Value],
    retry: Retry,
    key: Option<&str>,
) -> Result<Delivery, WebhookError> {
    let url = Url::parse(url).map_err(|e| WebhookError::InvalidUrl(e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(WebhookError::InvalidUrl(format!(
            "{} has no http(s) scheme or no host",
            redact(&url)
        )));
    }
    let target = redact(&url);
    let client = agent(&url, retry.timeout)?;

    let of = payloads.len();
    let max_attempts = retry.attempts.max(1);
    let mut requests = 0;
    for (index, payload) in payloads.iter().enumerate() {
        let message = index + 1;
        if index > 0 {
            tokio::time::sleep(retry.pacing).await;
        }
        let body = payload.to_string();
        let message_key = key.map(|key| format!("{key}-{message}"));
        let mut attempt = 0;
        loop {
            attempt += 1;
            requests += 1;
            let exchange = {
                let (client, url, body, key) = (client.clone(), url.clone(), body.clone(), message_key.clone());
                tokio::task::spawn_blocking(move || send(&client, &url, &body, key.as_deref())).await
            };
            // A send that panicked may have been sent: not resent.
            let outcome = exchange.unwrap_or_else(|_| Outcome::Unknown("the sending thread failed".to_owned()));
            let (reason, after) = match outcome {
                Outcome::Delivered => break,
                Outcome::Unknown(reason) => {
                    tracing::warn!(webhook = %target, message, of, attempts = attempt, %reason,
                        "webhook message sent but not answered in time: not resent");
                    return Err(WebhookError::Unknown {
                        target,
                        message,
                        of,
                        attempts: attempt,
                        reason,
                    });
                }
                Outcome::Refused { status, body } => {
                    tracing::warn!(webhook = %target, message, of, status = status.as_u16(), %body, "webhook refused a message");
                    return Err(WebhookError::Refused {
                        target,
                        message,
                        of,
                        status: status.as_u16(),
                        body,
                    });
                }
                Outcome::Retry { reason, after } => (reason, after),
            };
            let wait = after.unwrap_or_else(|| retry.backoff(attempt));
            if attempt < max_attempts && wait <= retry.max_backoff {
                let wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX);
                tracing::info!(webhook = %target, message, attempt, %reason, wait_ms, "webhook attempt failed, retrying");
                tokio::time::sleep(wait).await;
                continue;
            }
            let last = if attempt < max_attempts {
                let (asked, allowed) = (wait.as_secs(), retry.max_backoff.as_secs());
                format!("{reason} (asked to wait {asked} s, more than the {allowed} s allowed)")
            } else {
                reason
            };
            tracing::warn!(webhook = %target, message, of, attempts = attempt, reason = %last, "webhook delivery failed");
            return Err(WebhookError::GaveUp {
                target,
                message,
                of,
                attempts: attempt,
                last,
            });
        }
    }
    tracing::debug!(webhook = %target, messages = of, requests, "webhook delivered");
    Ok(Delivery {
        target,
        messages: of,
        attempts: requests,
    })
}

/// The HTTP agent of one delivery: statuses are answers (not errors),
/// redirects are not followed, every phase of an exchange has `timeout`, and
/// https trusts the system's certificate store.
fn agent(url: &Url, timeout: Duration) -> Result<ureq::Agent, WebhookError> {
    let phase = Some(timeout);
    let mut config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .max_redirects_will_error(false)
        .timeout_resolve(phase)
        .timeout_connect(phase)
        .timeout_send_request(phase)
        .timeout_send_body(phase)
        .timeout_recv_response(phase)
        .timeout_recv_body(phase);
    if url.scheme() == "https" {
        let tls = crate::tls::client_config().map_err(|error| WebhookError::Client(error.to_string()))?;
        config = config.tls_config(tls);
    }
    Ok(config.build().into())
}

/// One exchange: posts `body` to `url` and says what came of it. Blocking.
fn send(client: &ureq::Agent, url: &Url, body: &str, key: Option<&str>) -> Outcome {
    let mut request = client.post(url.as_str()).header(CONTENT_TYPE, "application/json");
    if let Some(key) = key {
        request = request.header("idempotency-key", key);
    }
    let mut response = match request.send(body) {
        Ok(response) => response,
        // Connected and sent, then no answer in time: the receiver may
        // have acted on it.
        Err(ureq::Error::Timeout(ureq::Timeout::SendBody | ureq::Timeout::RecvResponse | ureq::Timeout::RecvBody)) => {
            return Outcome::Unknown("no answer within the timeout".to_owned())
        }
        Err(e) => {
            return Outcome::Retry {
                reason: describe(&e, url),
                after: None,
            }
        }
    };
    let status = response.status();
    if status.is_success() {
        return Outcome::Delivered;
    }
    let after = retry_after(response.headers());
    let body = read_start(response.body_mut().as_reader());
    let retryable =
        status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::REQUEST_TIMEOUT || status.is_server_error();
    if retryable {
        Outcome::Retry {
            reason: format!("HTTP {}: {body}", status.as_u16()),
            after,
        }
    } else {
        Outcome::Refused { status, body }
    }
}

/// `Retry-After` in seconds (the form Slack sends); a date is ignored.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let seconds = headers.get(RETRY_AFTER)?.to_str().ok()?.trim().parse::<u64>().ok()?;
    Some(Duration::from_secs(seconds))
}

/// The start of a response's body, as one line of text.
fn read_start(body: impl std::io::Read) -> String {
    let mut bytes = Vec::new();
    // What could be read is kept; a body cut short says as much as it has.
    let _ = body.take((BODY_CHARS * 4) as u64).read_to_end(&mut bytes);
    let text = String::from_utf8_lossy(&bytes);
    let line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(BODY_CHARS)
        .collect();
    line.trim().to_string()
}

/// An error and its causes, with the URL's secret part (its path and query)
/// cut out wherever a cause repeats it.
fn describe(error: &ureq::Error, url: &Url) -> String {
    let text = crate::errors::chain(error);
    let secret = &url[url::Position::BeforePath..];
    if secret.len() > 1 {
        text.replace(secret, "/…")
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let retry = Retry {
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(10),
            ..Retry::default()
        };
        let waits: Vec<u64> = (1..=6).map(|a| retry.backoff(a).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 10, 10]);
        assert_eq!(retry.backoff(1_000), Duration::from_secs(10));
    }

    #[test]
    fn only_scheme_host_and_port_are_shown() {
        let url = Url::parse("https://hooks.slack.com/services/T000/B000/XXXXSECRET").unwrap();
        assert_eq!(redact(&url), "https://hooks.slack.com");
        let url = Url::parse("http://127.0.0.1:8080/hook?token=SECRET").unwrap();
        assert_eq!(redact(&url), "http://127.0.0.1:8080");
    }

    #[test]
    fn retry_after_is_read_in_seconds() {
        let mut headers = HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        headers.insert(RETRY_AFTER, "30".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(30)));
        headers.insert(RETRY_AFTER, "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap());
        assert_eq!(retry_after(&headers), None);
    }

    #[tokio::test]
    async fn a_url_that_is_not_http_is_refused_without_showing_it() {
        let err = post_json("ftp://example.invalid/SECRET", &[], Retry::default())
            .await
            .unwrap_err();
        assert!(matches!(err, WebhookError::InvalidUrl(_)));
        assert!(!err.to_string().contains("SECRET"), "{err}");
        let err = post_json("not a url SECRET", &[], Retry::default()).await.unwrap_err();
        assert!(!err.to_string().contains("SECRET"), "{err}");
    }
}
