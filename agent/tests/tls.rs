//! TLS from the agent to a loopback collector, with certificates made at
//! test time (rcgen): accepted with the CA file, over OTLP/HTTP and
//! OTLP/gRPC; refused without it or with the wrong CA, with a warning that
//! names the endpoint, says the certificate was not trusted and which
//! variable sets the CA; a client certificate presented when configured.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use kuroko_agent::export::{ExportConfig, ExportConfigError, Exporter};
use kuroko_agent::Agent;
use support::certs::{server_config, Ca, Folder};
use support::sink::{paths, Sink};

const PROTOCOLS: [(&str, &str); 2] = [
    ("http/protobuf", "/v1/metrics"),
    (
        "grpc",
        "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
    ),
];

fn export(agent: &Agent, env: &[(&str, String)]) -> Exporter {
    let map: HashMap<String, String> = env.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
    let config = ExportConfig::default()
        .with_interval(Duration::from_millis(100))
        .with_lookup(move |name| map.get(name).cloned());
    agent.export(config).expect("a valid configuration")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_the_ca_file_is_accepted() {
    let ca = Ca::new("Kuroko test CA");
    let files = Folder::new();
    let ca_file = files.write("ca.pem", &ca.pem());
    for (protocol, path) in PROTOCOLS {
        let sink = Sink::start(Some(server_config(&ca.server(), None)), Duration::ZERO).await;
        let agent = Agent::default();
        let exporter = export(
            &agent,
            &[
                ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol.into()),
                ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("https://{}", sink.address)),
                ("OTEL_EXPORTER_OTLP_CERTIFICATE", ca_file.display().to_string()),
            ],
        );
        let received = sink
            .wait_for(&format!("{protocol} over TLS"), |r| r.iter().any(|r| r.path == path))
            .await;
        assert!(received[0].client_certificate.is_none(), "{protocol}: none configured");
        assert_eq!(exporter.stats().failed_exports, 0, "{protocol}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_ca_or_with_the_wrong_one_it_is_refused_with_the_reason() {
    support::logs::capture();
    let ca = Ca::new("Kuroko test CA");
    let other = Ca::new("Someone else's CA");
    let files = Folder::new();
    let wrong_ca = files.write("other-ca.pem", &other.pem());
    for (protocol, path) in PROTOCOLS {
        for wrong in [None, Some(&wrong_ca)] {
            let sink = Sink::start(Some(server_config(&ca.server(), None)), Duration::ZERO).await;
            let agent = Agent::default();
            let url = format!("https://{}", sink.address);
            let mut env = vec![
                ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol.to_owned()),
                ("OTEL_EXPORTER_OTLP_ENDPOINT", url.clone()),
            ];
            if let Some(file) = wrong {
                env.push(("OTEL_EXPORTER_OTLP_CERTIFICATE", file.display().to_string()));
            }
            let mark = support::logs::mark();
            let exporter = export(&agent, &env);
            let line = support::logs::wait_for_line_since(mark, &[&url, "certificate was not trusted"]).await;
            assert!(line.contains("WARN"), "{line}");
            assert!(
                line.contains("set OTEL_EXPORTER_OTLP_CERTIFICATE (or OTEL_EXPORTER_OTLP_METRICS_CERTIFICATE"),
                "{protocol}: {line}"
            );
            match wrong {
                Some(file) => assert!(
                    line.contains(&format!(
                        "neither the system's CAs nor the CA file {} trust it",
                        file.display()
                    )),
                    "{line}"
                ),
                None => assert!(line.contains("no CA file is set"), "{line}"),
            }
            failures_counted(&exporter, protocol).await;
            assert!(
                !sink.received().iter().any(|r| r.path == path),
                "{protocol}: an untrusted collector got {:?}",
                paths(&sink.received())
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_is_presented_when_configured() {
    support::logs::capture();
    let ca = Ca::new("Kuroko test CA");
    let clients = Ca::new("Kuroko clients CA");
    let client = clients.client("cards-api");
    let files = Folder::new();
    let ca_file = files.write("ca.pem", &ca.pem());
    let cert_file = files.write("client.pem", &client.cert_pem);
    let key_file = files.write("client-key.pem", &client.key_pem);
    for (protocol, path) in PROTOCOLS {
        let sink = Sink::start(Some(server_config(&ca.server(), Some(&clients))), Duration::ZERO).await;
        let url = format!("https://{}", sink.address);
        let base = [
            ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol.to_owned()),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", url.clone()),
            ("OTEL_EXPORTER_OTLP_CERTIFICATE", ca_file.display().to_string()),
        ];
        // Per signal, to show those variables count as well.
        let mut env = base.to_vec();
        env.push((
            "OTEL_EXPORTER_OTLP_METRICS_CLIENT_CERTIFICATE",
            cert_file.display().to_string(),
        ));
        env.push(("OTEL_EXPORTER_OTLP_METRICS_CLIENT_KEY", key_file.display().to_string()));
        let agent = Agent::default();
        let _exporter = export(&agent, &env);
        let received = sink
            .wait_for(&format!("{protocol} with a client certificate"), |r| {
                r.iter().any(|r| r.path == path)
            })
            .await;
        let metrics = received.iter().find(|r| r.path == path).unwrap();
        assert_eq!(
            metrics.client_certificate.as_deref(),
            Some(client.der.as_ref()),
            "{protocol}: the configured certificate"
        );

        // Without one, the collector refuses, and the log says what to set.
        let agent = Agent::default();
        let mark = support::logs::mark();
        let exporter = export(&agent, &base);
        let line = support::logs::wait_for_line_since(mark, &[&url, "wants a TLS client certificate"]).await;
        assert!(line.contains("none is set"), "{protocol}: {line}");
        assert!(
            line.contains("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE"),
            "{protocol}: {line}"
        );
        failures_counted(&exporter, protocol).await;
    }
}

/// Waits (up to 10 s) for this exporter to count a failed export: the line
/// waited for may come from an earlier exporter whose collector had the
/// same port, so the count is checked on its own.
async fn failures_counted(exporter: &Exporter, protocol: &str) {
    for _ in 0..500 {
        if exporter.stats().failed_exports > 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{protocol}: no failed export counted: {:?}", exporter.stats());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_set_in_code_that_is_not_pem_is_refused_at_start() {
    let files = Folder::new();
    let not_pem = files.write("ca.pem", "not a certificate");
    let agent = Agent::default();
    let error = agent
        .export(
            ExportConfig::default()
                .with_endpoint("https://127.0.0.1:4318")
                .with_certificate(not_pem.clone()),
        )
        .unwrap_err();
    assert!(matches!(error, ExportConfigError::Certificate { .. }));
    assert_eq!(
        error.to_string(),
        format!(
            "CA certificate {:?}: holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
            not_pem
        )
    );
}
