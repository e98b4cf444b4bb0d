//! The weekly report as an email: building the MIME message, sending it over
//! SMTP with bounded retries, and writing a preview to disk instead.
//!
//! The message is `multipart/alternative`: the plain text first, then a
//! `multipart/related` holding the HTML and the charts as inline PNG parts
//! (`Content-Disposition: inline` with a Content-ID the HTML refers to as
//! `cid:`), which is what Gmail, Outlook and Apple Mail all display.
//!
//! Sending uses lettre's blocking `SmtpTransport` (implicit TLS, STARTTLS, or
//! plain for a relay on the same host) with rustls and the system's CA
//! certificates. [`send`] blocks while it waits between attempts, so an
//! async caller runs it on `tokio::task::spawn_blocking`: a failing mail
//! server then holds up nothing but its own report. Errors the server says
//! are permanent (5xx: bad credentials, refused recipient) are not retried;
//! the rest are, with exponential backoff, and the final [`MailError`] says
//! how many attempts were made and what the server last said, for the caller
//! to record where people look.
//!
//! The SMTP password is read from a file or an environment variable at send
//! time, held as a [`Secret`] (whose `Debug` prints `<redacted>`), and never
//! logged; the configuration itself holds only where to find it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{Message, SmtpTransport, Transport};
use serde::Deserialize;

use super::chart::ChartRef;
use super::weekly::{render_html, render_html_with, render_text, subject, WeeklyReport};
use crate::config::Secret;

/// How the connection to the SMTP server is protected.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Security {
    /// TLS from the first byte (SMTPS), port 465 by default.
    Tls,
    /// Plain connection upgraded with STARTTLS, which is required; port 587 by default.
    #[default]
    StartTls,
    /// No encryption, port 25 by default: only for a relay on the same host or network.
    None,
}

/// Where the reporter sends mail from, as `[smtp]` in the configuration.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    /// The server's host name (also the name its certificate must carry).
    pub host: String,
    /// The server's port; by default 465, 587 or 25 after `security`.
    #[serde(default)]
    pub port: Option<u16>,
    /// How the connection is protected.
    #[serde(default)]
    pub security: Security,
    /// The user to authenticate as; no authentication when `None`.
    #[serde(default)]
    pub username: Option<String>,
    /// A file holding the password (surrounding whitespace ignored).
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// An environment variable holding the password, when there is no file.
    #[serde(default)]
    pub password_env: Option<String>,
    /// The sender, e.g. `Kuroko <kuroko@example.com>`.
    pub from: String,
    /// How long one SMTP command may take, in seconds.
    #[serde(default = "default_timeout_seconds")]
    pub timeout_seconds: u64,
    /// Instead of sending, write each message as an `.eml` file into this
    /// folder (created if missing); `host` is then not contacted. For
    /// `kuroko demo` and trials on a machine without a mail server.
    #[serde(default)]
    pub file_dir: Option<PathBuf>,
}

fn default_timeout_seconds() -> u64 {
    30
}

impl SmtpConfig {
    /// The port in force.
    pub fn port(&self) -> u16 {
        self.port.unwrap_or(match self.security {
            Security::Tls => 465,
            Security::StartTls => 587,
            Security::None => 25,
        })
    }

    /// The password, read now from `password_file` or else `password_env`;
    /// `None` when neither is set.
    pub fn password(&self) -> Result<Option<Secret>, MailError> {
        if let Some(path) = &self.password_file {
            let text = std::fs::read_to_string(path).map_err(|source| MailError::PasswordFile {
                path: path.clone(),
                source,
            })?;
            let password = text.trim();
            if password.is_empty() {
                return Err(MailError::EmptyPassword(path.display().to_string()));
            }
            return Ok(Some(Secret::new(password)));
        }
        if let Some(variable) = &self.password_env {
            return match std::env::var(variable) {
                Ok(value) if !value.is_empty() => Ok(Some(Secret::new(value))),
                Ok(_) => Err(MailError::EmptyPassword(format!("${variable}"))),
                Err(_) => Err(MailError::PasswordEnv(variable.clone())),
            };
        }
        Ok(None)
    }

    fn server(&self) -> String {
        format!("{}:{}", self.host, self.port())
    }
}

/// How often and how patiently [`send`] tries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retry {
    /// Attempts in all, at least one.
    pub attempts: u32,
    /// The wait after the first failure; it doubles after each one.
    pub first_delay: Duration,
    /// The longest wait between two attempts.
    pub max_delay: Duration,
}

impl Default for Retry {
    /// Five attempts over about five minutes: 10 s, 20 s, 40 s, 80 s apart
    /// (plus each attempt's own time).
    fn default() -> Self {
        Retry {
            attempts: 5,
            first_delay: Duration::from_secs(10),
            max_delay: Duration::from_secs(120),
        }
    }
}

impl Retry {
    /// The wait after failed attempt `attempt` (1-based).
    pub(crate) fn delay_after(&self, attempt: u32) -> Duration {
        let factor = 1u32 << attempt.saturating_sub(1).min(16);
        self.first_delay.saturating_mul(factor).min(self.max_delay)
    }
}

/// Why the report could not be built or delivered.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    /// A sender or recipient address does not parse.
    #[error("the {role} address {address:?} is not valid: {reason}")]
    Address {
        /// `sender` or `recipient`.
        role: &'static str,
        /// The address as given.
        address: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The report has no one to go to.
    #[error("the report has no recipients")]
    NoRecipients,
    /// lettre refused to assemble the message.
    #[error("building the message: {0}")]
    Build(#[from] lettre::error::Error),
    /// The password variable is not set.
    #[error("the SMTP password variable {0} is not set")]
    PasswordEnv(String),
    /// The password file cannot be read.
    #[error("reading the SMTP password file {path}: {source}")]
    PasswordFile {
        /// The file.
        path: PathBuf,
        /// Why it cannot be read.
        source: std::io::Error,
    },
    /// The password file or variable is empty.
    #[error("the SMTP password in {0} is empty")]
    EmptyPassword(String),
    /// The transport could not be set up (e.g. TLS parameters for the host).
    #[error("setting up SMTP to {server}: {reason}")]
    Setup {
        /// `host:port`.
        server: String,
        /// What failed.
        reason: String,
    },
    /// Every attempt failed, or the server refused the message for good.
    #[error("sending to {server} failed after {attempts} attempt(s){}: {last}", if *.permanent { ", refused for good" } else { "" })]
    Send {
        /// `host:port`.
        server: String,
        /// Attempts made.
        attempts: u32,
        /// Whether the server's answer was permanent (5xx), so retrying later will not help.
        permanent: bool,
        /// The last error.
        last: String,
    },
}

/// `address` as a mailbox, or what is wrong with it as the message's `role`
/// (sender, recipient).
pub(crate) fn mailbox(role: &'static str, address: &str) -> Result<Mailbox, MailError> {
    address
        .parse()
        .map_err(|e: lettre::address::AddressError| MailError::Address {
            role,
            address: address.to_owned(),
            reason: e.to_string(),
        })
}

/// The report as a message from `from` to `to`: text, HTML and `charts`
/// inline (each chart's `content_id` must be what the HTML refers to, as
/// [`super::chart::render_charts`] makes them).
pub fn build_message(
    report: &WeeklyReport,
    to: &[String],
    from: &str,
    charts: &[ChartRef],
) -> Result<Message, MailError> {
    if to.is_empty() {
        return Err(MailError::NoRecipients);
    }
    let mut builder = Message::builder()
        .from(mailbox("sender", from)?)
        .subject(subject(report))
        .message_id(None);
    for address in to {
        builder = builder.to(mailbox("recipient", address)?);
    }
    let png = ContentType::parse("image/png").map_err(|e| MailError::Setup {
        server: String::new(),
        reason: e.to_string(),
    })?;
    let mut related = MultiPart::related().singlepart(SinglePart::html(render_html(report, charts)));
    for chart in charts {
        related = related.singlepart(
            Attachment::new_inline_with_name(chart.content_id.clone(), chart.file_name.clone())
                .body(chart.png.clone(), png.clone()),
        );
    }
    let body = MultiPart::alternative()
        .singlepart(SinglePart::plain(render_text(report)))
        .multipart(related);
    Ok(builder.multipart(body)?)
}

fn transport(cfg: &SmtpConfig) -> Result<SmtpTransport, MailError> {
    let setup = |e: lettre::transport::smtp::Error| MailError::Setup {
        server: cfg.server(),
        reason: e.to_string(),
    };
    let builder = match cfg.security {
        Security::Tls => SmtpTransport::relay(&cfg.host).map_err(setup)?,
        Security::StartTls => SmtpTransport::starttls_relay(&cfg.host).map_err(setup)?,
        Security::None => SmtpTransport::builder_dangerous(&cfg.host),
    };
    let mut builder = builder
        .port(cfg.port())
        .timeout(Some(Duration::from_secs(cfg.timeout_seconds.max(1))));
    if let Some(user) = &cfg.username {
        let password = cfg.password()?.map(|p| p.expose().to_owned()).unwrap_or_default();
        builder = builder.credentials(Credentials::new(user.clone(), password));
    }
    Ok(builder.build())
}

/// Sends `message` through the server `cfg` names, trying up to
/// `retry.attempts` times; returns the number of attempts it took. Blocks
/// (run it on a blocking thread from async code).
pub fn send(cfg: &SmtpConfig, message: &Message, retry: Retry) -> Result<u32, MailError> {
    if let Some(dir) = &cfg.file_dir {
        return write_eml(dir, message);
    }
    let transport = transport(cfg)?;
    let attempts = retry.attempts.max(1);
    let mut attempt = 1;
    loop {
        match transport.send(message) {
            Ok(_) => return Ok(attempt),
            Err(e) => {
                let permanent = e.is_permanent() || e.is_client();
                if permanent || attempt >= attempts {
                    return Err(MailError::Send {
                        server: cfg.server(),
                        attempts: attempt,
                        permanent,
                        last: e.to_string(),
                    });
                }
                let delay = retry.delay_after(attempt);
                tracing::warn!(
                    server = %cfg.server(),
                    attempt,
                    error = %e,
                    "sending the weekly report failed; retrying in {delay:?}"
                );
                std::thread::sleep(delay);
                attempt += 1;
            }
        }
    }
}

/// Writes `message` as `<id>.eml` into `dir` (lettre's file transport).
fn write_eml(dir: &Path, message: &Message) -> Result<u32, MailError> {
    let failed = |last: String| MailError::Send {
        server: dir.display().to_string(),
        attempts: 1,
        permanent: false,
        last,
    };
    std::fs::create_dir_all(dir).map_err(|e| failed(e.to_string()))?;
    lettre::FileTransport::new(dir)
        .send(message)
        .map_err(|e| failed(e.to_string()))?;
    Ok(1)
}

/// A chart file name that stays inside the preview directory.
fn is_plain_file_name(name: &str) -> bool {
    !name.is_empty() && !name.starts_with('.') && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

/// Writes the report for preview into `dir` (created if missing):
/// `report.html` (charts referenced by their file names, so a browser shows
/// them), `report.txt` and the charts' PNGs. Returns the files written.
pub fn write_preview(dir: &Path, report: &WeeklyReport, charts: &[ChartRef]) -> std::io::Result<Vec<PathBuf>> {
    if let Some(bad) = charts.iter().find(|c| !is_plain_file_name(&c.file_name)) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("chart file name {:?} is not a plain file name", bad.file_name),
        ));
    }
    std::fs::create_dir_all(dir)?;
    let mut written = Vec::with_capacity(charts.len() + 2);
    let html = render_html_with(report, charts, |chart| chart.file_name.clone());
    for (name, contents) in [
        ("report.html", html.as_bytes()),
        ("report.txt", render_text(report).as_bytes()),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, contents)?;
        written.push(path);
    }
    for chart in charts {
        let path = dir.join(&chart.file_name);
        std::fs::write(&path, &chart.png)?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::chart::render_charts;
    use crate::report::weekly::tests::sample;

    fn config() -> SmtpConfig {
        SmtpConfig {
            host: "mail.example.com".into(),
            port: None,
            security: Security::StartTls,
            username: Some("kuroko".into()),
            password_file: None,
            password_env: None,
            from: "Kuroko <kuroko@example.com>".into(),
            timeout_seconds: 30,
            file_dir: None,
        }
    }

    #[test]
    fn the_password_is_read_from_its_file_and_never_printed() {
        let dir = std::env::temp_dir().join(format!("kuroko-smtp-password-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("password");
        std::fs::write(&file, "hunter2-secret\n").unwrap();
        let cfg = SmtpConfig {
            password_file: Some(file.clone()),
            ..config()
        };
        let password = cfg.password().unwrap().unwrap();
        assert_eq!(password.expose(), "hunter2-secret");
        assert!(!format!("{password:?} {cfg:?}").contains("hunter2"));
        std::fs::write(&file, "  \n").unwrap();
        assert!(matches!(cfg.password(), Err(MailError::EmptyPassword(_))));
        let missing = SmtpConfig {
            password_env: Some("KUROKO_TEST_SURELY_UNSET_PASSWORD".into()),
            ..config()
        };
        assert!(matches!(missing.password(), Err(MailError::PasswordEnv(_))));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn parses_from_toml_with_defaults_by_security() {
        let cfg: SmtpConfig = toml::from_str(
            "host = \"smtp.example.com\"\nsecurity = \"tls\"\nfrom = \"k@example.com\"\npassword_env = \"SMTP_PW\"",
        )
        .unwrap();
        assert_eq!(
            (cfg.security, cfg.port(), cfg.timeout_seconds),
            (Security::Tls, 465, 30)
        );
        assert_eq!(config().port(), 587);
        assert!(toml::from_str::<SmtpConfig>("host = \"h\"\nfrom = \"f@x\"\npassword = \"x\"").is_err());
    }

    #[test]
    fn a_file_dir_gets_the_message_as_an_eml_file() {
        let dir = std::env::temp_dir().join(format!("kuroko-mailbox-{}", std::process::id()));
        let cfg: SmtpConfig = toml::from_str(&format!(
            "host = \"unused.invalid\"\nfrom = \"k@example.com\"\nfile_dir = {:?}",
            dir.display().to_string()
        ))
        .unwrap();
        let message = build_message(&sample(), &["team@example.com".to_owned()], &cfg.from, &[]).unwrap();
        assert_eq!(send(&cfg, &message, Retry::default()).unwrap(), 1);
        let files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].extension().unwrap(), "eml");
        let raw = std::fs::read_to_string(&files[0]).unwrap();
        assert!(raw.contains("To: team@example.com"), "{raw}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn backoff_doubles_up_to_its_bound() {
        let retry = Retry::default();
        let delays: Vec<u64> = (1..=6).map(|a| retry.delay_after(a).as_secs()).collect();
        assert_eq!(delays, [10, 20, 40, 80, 120, 120]);
        assert_eq!(retry.delay_after(1000), retry.max_delay);
    }

    #[test]
    fn bad_addresses_are_named() {
        let report = sample();
        let to = vec!["not an address".to_owned()];
        let err = build_message(&report, &to, "kuroko@example.com", &[]).unwrap_err();
        assert!(
            err.to_string().contains("recipient address \"not an address\""),
            "{err}"
        );
        assert!(matches!(
            build_message(&report, &[], "kuroko@example.com", &[]),
            Err(MailError::NoRecipients)
        ));
    }

    #[test]
    fn the_message_nests_text_html_and_inline_charts() {
        let report = sample();
        let charts = render_charts(&report).unwrap();
        let to = vec!["team@example.com".to_owned()];
        let message = build_message(&report, &to, "Kuroko <kuroko@example.com>", &charts).unwrap();
        let raw = String::from_utf8(message.formatted()).unwrap();
        let order = [
            "multipart/alternative",
            "text/plain",
            "multipart/related",
            "text/html",
            "image/png",
        ];
        let positions: Vec<usize> = order.iter().map(|t| raw.find(t).unwrap()).collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "{positions:?}");
        assert!(raw.contains("Content-ID: <chart-0@kuroko>"));
        assert!(raw.contains("Content-Disposition: inline"));
    }

    #[test]
    fn the_preview_shows_charts_by_file_name() {
        let dir = std::env::temp_dir().join(format!("kuroko-preview-{}", std::process::id()));
        let report = sample();
        let charts = render_charts(&report).unwrap();
        let files = write_preview(&dir, &report, &charts).unwrap();
        let names: Vec<_> = files.iter().map(|f| f.file_name().unwrap().to_str().unwrap()).collect();
        assert_eq!(names, ["report.html", "report.txt", "chart-0.png"]);
        let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
        assert!(html.contains("src=\"chart-0.png\"") && !html.contains("cid:"));
        assert_eq!(std::fs::read(dir.join("chart-0.png")).unwrap(), charts[0].png);
        let mut escaping = charts[0].clone();
        escaping.file_name = "../evil.png".into();
        assert!(write_preview(&dir, &report, &[escaping]).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
