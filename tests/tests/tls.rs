//! TLS on the reporter's ports, as a team running it across machines sets
//! it up: `kuroko serve` with `[tls]` (a certificate made at test time by
//! a CA of the test's own, rcgen); Kuroko agents export to it over
//! OTLP/HTTP and OTLP/gRPC with the CA file (`OTEL_EXPORTER_OTLP_CERTIFICATE`)
//! and `kuroko query --server https://…` reads it back with the CA in
//! `SSL_CERT_FILE`. An agent trusting another CA is refused and nothing of
//! it is stored; plain HTTP to the TLS port gets no answer; with
//! `client_ca_file`, only an agent presenting a certificate of that CA is
//! taken; a key that is not the certificate's stops `kuroko serve` with the
//! file's name. The official Python SDK (`tests/python/sdk_tls.py`, its
//! packages installed by `tests/run-all.sh`) exports over both protocols
//! with the CA in `OTEL_EXPORTER_OTLP_CERTIFICATE`, and every run it
//! recorded is counted.

#[allow(dead_code)]
#[path = "../../agent/tests/support/certs.rs"]
mod certs;

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use certs::{Ca, Folder};
use kuroko_agent::export::{ExportConfig, Exporter};
use kuroko_agent::{Agent, AgentConfig};
use kuroko_e2e::{kuroko, serve, Running};
use serde_json::Value;

/// A test's certificates, as PEM files in a folder of its own.
struct Pki {
    files: Folder,
    /// The CA that signed the reporter's certificate.
    ca_file: std::path::PathBuf,
    /// Another CA, which did not.
    other_file: std::path::PathBuf,
    /// `[tls]`'s `cert_file` and `key_file` lines for the reporter's
    /// certificate (127.0.0.1 and localhost) and key.
    tls: String,
}

fn pki() -> Pki {
    let (ca, other, files) = (Ca::new("Kuroko test CA"), Ca::new("Someone else's CA"), Folder::new());
    let server = ca.server();
    let cert = files.write("cert.pem", &server.cert_pem);
    let key = files.write("key.pem", &server.key_pem);
    Pki {
        ca_file: files.write("ca.pem", &ca.pem()),
        other_file: files.write("other-ca.pem", &other.pem()),
        tls: format!("cert_file = \"{}\"\nkey_file = \"{}\"\n", cert.display(), key.display()),
        files,
    }
}

/// `kuroko serve` with `[tls]` from `tls_lines`, on loopback; the reporter,
/// its HTTPS base URL and its gRPC address.
fn start(files: &Folder, tls_lines: &str) -> (Running, String, String) {
    let config = files.path().join("kuroko.toml");
    std::fs::write(
        &config,
        format!(
            "store = \"{}\"\ngrpc_listen = \"127.0.0.1:0\"\nhttp_listen = \"127.0.0.1:0\"\n\n\
             [schedule]\nweekly = \"off\"\ndigest = \"off\"\n\n[tls]\n{tls_lines}",
            files.path().join("kuroko.db").display()
        ),
    )
    .expect("config");
    let (reporter, https) = serve(&config);
    assert!(
        https.starts_with("https://"),
        "the reporter says it serves TLS: {https}"
    );
    let grpc = reporter
        .seen
        .iter()
        .find_map(|line| line.split("OTLP/gRPC on ").nth(1))
        .and_then(|rest| rest.split(',').next())
        .expect("the gRPC address line")
        .trim()
        .to_owned();
    (reporter, https, grpc)
}

/// An agent of `service` that ran `checkout` five times (40 ms each),
/// exporting every 100 ms with the `OTEL_*` variables `env`.
fn agent(service: &str, env: &[(&str, String)]) -> (Agent, Exporter) {
    let agent = Agent::new(AgentConfig::default().with_service_name(service)).expect("agent");
    for _ in 0..5 {
        agent.record("checkout", Duration::from_millis(40));
    }
    let map: HashMap<String, String> = env.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
    let config = ExportConfig::default()
        .with_interval(Duration::from_millis(100))
        .with_lookup(move |name| map.get(name).cloned());
    let exporter = agent.export(config).expect("a valid export configuration");
    (agent, exporter)
}

/// Waits (up to a minute: the machine may be loaded) until `done` holds
/// for `exporter`'s counters.
fn wait(exporter: &Exporter, what: &str, done: impl Fn(&Exporter) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done(exporter) {
        assert!(Instant::now() < deadline, "{what}: {exporter:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `kuroko query slowest` of the last hour from the reporter at `server`,
/// trusting the CAs in `ca_file`: its rows, or its error.
fn slowest(server: &str, ca_file: &Path) -> Result<Vec<Value>, String> {
    let output = std::process::Command::new(kuroko())
        .args([
            "query", "slowest", "--since", "1h", "--format", "json", "--server", server,
        ])
        .env("SSL_CERT_FILE", ca_file)
        .output()
        .expect("kuroko can be started");
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).into_owned());
    }
    let answer: Value = serde_json::from_slice(&output.stdout).expect("kuroko query prints JSON");
    Ok(answer["rows"].as_array().cloned().unwrap_or_default())
}

/// The services [`slowest`] lists.
fn services(server: &str, ca_file: &Path) -> Result<Vec<String>, String> {
    let mut services: Vec<String> = slowest(server, ca_file)?
        .iter()
        .filter_map(|row| row["service"].as_str().map(str::to_owned))
        .collect();
    services.sort();
    services.dedup();
    Ok(services)
}

/// Waits (up to a minute) until the reporter lists `expected`.
fn wait_for_services(server: &str, ca_file: &Path, expected: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let listed = services(server, ca_file).expect("kuroko query over https with SSL_CERT_FILE");
        if listed == expected {
            return;
        }
        assert!(Instant::now() < deadline, "listed {listed:?}, expected {expected:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_export_over_https_and_grpc_with_tls_and_the_cli_reads_over_https() {
    let Pki {
        files,
        ca_file,
        other_file,
        tls,
    } = pki();
    let (reporter, https, grpc) = start(&files, &tls);

    let over_http = agent(
        "tls-over-http",
        &[
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf".into()),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", https.clone()),
            ("OTEL_EXPORTER_OTLP_CERTIFICATE", ca_file.display().to_string()),
        ],
    );
    let over_grpc = agent(
        "tls-over-grpc",
        &[
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc".into()),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("https://{grpc}")),
            ("OTEL_EXPORTER_OTLP_CERTIFICATE", ca_file.display().to_string()),
        ],
    );
    let untrusting = agent(
        "tls-wrong-ca",
        &[
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf".into()),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", https.clone()),
            ("OTEL_EXPORTER_OTLP_CERTIFICATE", other_file.display().to_string()),
        ],
    );
    let blocking = tokio::task::spawn_blocking(move || {
        wait(&over_http.1, "OTLP/HTTP over TLS accepted", |e| e.sent_requests() > 0);
        wait(&over_grpc.1, "OTLP/gRPC over TLS accepted", |e| e.sent_requests() > 0);
        wait(&untrusting.1, "another CA's agent refused", |e| {
            e.stats().failed_exports > 0
        });
        assert_eq!(
            untrusting.1.sent_requests(),
            0,
            "nothing sent past an untrusted certificate"
        );
        // Both agents' runs, and nothing of the refused one.
        wait_for_services(&https, &ca_file, &["tls-over-grpc", "tls-over-http"]);

        // The CLI without the CA: refused, saying what to set.
        let refused = services(&https, &other_file).expect_err("an untrusted reporter");
        assert!(refused.contains("SSL_CERT_FILE"), "says what to set: {refused}");
        (over_http, over_grpc, untrusting, https)
    });
    let (_, _, _, https) = blocking.await.expect("the checks");

    // Plain HTTP to the TLS port: no answer, the connection is closed.
    let plain = https.replace("https://", "http://");
    let answer = reqwest::Client::new()
        .get(format!("{plain}/api/v1/health"))
        .timeout(Duration::from_secs(30))
        .send()
        .await;
    assert!(answer.is_err(), "plain HTTP answered: {answer:?}");
    drop(reporter);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_client_ca_only_agents_with_its_certificates_are_taken() {
    let Pki {
        files, ca_file, tls, ..
    } = pki();
    let agents_ca = Ca::new("Kuroko agents' CA");
    let agents_ca_file = files.write("agents-ca.pem", &agents_ca.pem());
    let client = agents_ca.client("checkout-agent");
    let client_cert = files.write("client.pem", &client.cert_pem);
    let client_key = files.write("client-key.pem", &client.key_pem);
    let (reporter, https, grpc) = start(
        &files,
        &format!("{tls}client_ca_file = \"{}\"\n", agents_ca_file.display()),
    );
    let trusted = [
        ("OTEL_EXPORTER_OTLP_CERTIFICATE", ca_file.display().to_string()),
        (
            "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
            client_cert.display().to_string(),
        ),
        ("OTEL_EXPORTER_OTLP_CLIENT_KEY", client_key.display().to_string()),
    ];
    let with_certificate = agent(
        "mtls-grpc",
        &[
            [
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc".to_owned()),
                ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("https://{grpc}")),
            ]
            .as_slice(),
            trusted.as_slice(),
        ]
        .concat(),
    );
    let with_certificate_http = agent(
        "mtls-http",
        &[
            [
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf".to_owned()),
                ("OTEL_EXPORTER_OTLP_ENDPOINT", https.clone()),
            ]
            .as_slice(),
            trusted.as_slice(),
        ]
        .concat(),
    );
    let without = agent(
        "mtls-none",
        &[
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf".into()),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", https.clone()),
            ("OTEL_EXPORTER_OTLP_CERTIFICATE", ca_file.display().to_string()),
        ],
    );
    tokio::task::spawn_blocking(move || {
        wait(&with_certificate.1, "gRPC with a client certificate", |e| {
            e.sent_requests() > 0
        });
        wait(&with_certificate_http.1, "HTTP with a client certificate", |e| {
            e.sent_requests() > 0
        });
        wait(&without.1, "no client certificate refused", |e| {
            e.stats().failed_exports > 0
        });
        assert_eq!(without.1.sent_requests(), 0);
        // Read back through the store's file: the API asks for a client
        // certificate too, which `kuroko query` does not present.
        let db = files.path().join("kuroko.db");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let out = kuroko_e2e::output(
                &kuroko(),
                &[
                    "query",
                    "slowest",
                    "--since",
                    "1h",
                    "--format",
                    "json",
                    "--store",
                    db.to_str().expect("utf-8"),
                ],
                &[],
            );
            if out.contains("mtls-grpc") && out.contains("mtls-http") {
                assert!(!out.contains("mtls-none"), "{out}");
                break;
            }
            assert!(Instant::now() < deadline, "{out}");
            std::thread::sleep(Duration::from_millis(200));
        }
        drop((with_certificate, with_certificate_http, without, files));
    })
    .await
    .expect("the checks");
    drop(reporter);
}

/// `tests/python/sdk_tls.py` as `service` over `protocol` to `endpoint`,
/// trusting `ca_file`: whether it said it exported, and what it printed.
fn python(endpoint: &str, protocol: &str, service: &str, ca_file: &Path) -> (bool, String) {
    const SENDER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/python/sdk_tls.py");
    let output = match std::process::Command::new("python3")
        .args([SENDER, endpoint, protocol, service])
        .env("OTEL_EXPORTER_OTLP_CERTIFICATE", ca_file)
        // With either set, requests ignores the CA file the exporter gives
        // its session (psf/requests#4726); this machine sets both, as
        // many images do (docs/security.md says so to users).
        .env_remove("REQUESTS_CA_BUNDLE")
        .env_remove("CURL_CA_BUNDLE")
        .output()
    {
        Ok(output) => output,
        Err(error) => panic!("python3 cannot be run ({error}): run tests/run-all.sh, which installs it"),
    };
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert_ne!(
        output.status.code(),
        Some(3),
        "python3 lacks the OpenTelemetry SDK: run tests/run-all.sh, which installs it\n{said}"
    );
    (output.status.success(), said)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_python_sdk_exports_over_tls_with_its_certificate_variable() {
    let Pki {
        files,
        ca_file,
        other_file,
        tls,
    } = pki();
    let (reporter, https, grpc) = start(&files, &tls);
    tokio::task::spawn_blocking(move || {
        for (endpoint, protocol, service) in [
            (https.clone(), "http/protobuf", "py-tls-http"),
            (format!("https://{grpc}"), "grpc", "py-tls-grpc"),
        ] {
            let (ok, said) = python(&endpoint, protocol, service, &ca_file);
            assert!(ok && said.contains("runs=120"), "{protocol}: {said}");
        }
        // Trusting another CA, the SDK's export fails (it logs why);
        // nothing of it reaches the store.
        let _ = python(&https, "http/protobuf", "py-tls-untrusting", &other_file);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let rows = slowest(&https, &ca_file).expect("kuroko query over https");
            let runs = |service: &str| {
                rows.iter()
                    .filter(|row| row["service"] == service)
                    .filter_map(|row| row["count"].as_u64())
                    .sum::<u64>()
            };
            assert_eq!(runs("py-tls-untrusting"), 0, "{rows:?}");
            if (runs("py-tls-http"), runs("py-tls-grpc")) == (120, 120) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "every run the SDK recorded, over each protocol: {rows:?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        drop(files);
    })
    .await
    .expect("the checks");
    drop(reporter);
}

#[test]
fn a_key_that_is_not_the_certificates_stops_the_reporter_with_the_files_name() {
    let ca = Ca::new("Kuroko test CA");
    let files = Folder::new();
    let (one, another) = (ca.server(), ca.server());
    let cert = files.write("cert.pem", &one.cert_pem);
    let key = files.write("key.pem", &another.key_pem);
    let config = files.path().join("kuroko.toml");
    std::fs::write(
        &config,
        format!(
            "store = \"{}\"\ngrpc_listen = \"127.0.0.1:0\"\nhttp_listen = \"127.0.0.1:0\"\n\n[tls]\n\
             cert_file = \"{}\"\nkey_file = \"{}\"\n",
            files.path().join("kuroko.db").display(),
            cert.display(),
            key.display()
        ),
    )
    .expect("config");
    let output = std::process::Command::new(kuroko())
        .args(["serve", "--config", config.to_str().expect("utf-8")])
        .output()
        .expect("kuroko can be started");
    assert!(!output.status.success(), "started with a mismatched key");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("[tls] cannot use cert_file with key_file"),
        "says which setting is wrong: {stderr}"
    );
}
