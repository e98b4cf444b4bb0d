//! The host's wall clock jumps back an hour and forward a day mid-interval:
//! durations stay monotonic, and every exported interval still starts before
//! it ends. The jumps are real, made by libfaketime (Debian `libfaketime`,
//! installed by `tests/run-all.sh`) in a child run of this test binary, whose
//! wall clock follows a file the child rewrites; its monotonic clock and the
//! CPU's TSC are left alone, as in a real NTP step.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, SystemTime};

use kuroko_agent::export::{Encoder, ExportConfig, ExportStats};
use kuroko_agent::Agent;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::metrics::v1::metric;
use prost::Message;

const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";
const CHILD: &str = "KUROKO_CLOCK_JUMP_FILE";

#[test]
fn wall_clock_jumps_keep_intervals_monotonic() {
    assert!(
        std::path::Path::new(LIBFAKETIME).exists(),
        "{LIBFAKETIME} is missing: run tests/run-all.sh, which installs Debian's libfaketime"
    );
    let file: PathBuf = std::env::temp_dir().join(format!("kuroko-faketime-{}", std::process::id()));
    std::fs::write(&file, "+0\n").unwrap();
    let output = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "clock_jump_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("LD_PRELOAD", LIBFAKETIME)
        .env("FAKETIME_TIMESTAMP_FILE", &file)
        .env("FAKETIME_NO_CACHE", "1")
        .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
        .env(CHILD, &file)
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&file);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "the child failed:\n{text}");
    assert!(text.contains("1 passed"), "the child ran its checks:\n{text}");
}

/// Run by `wall_clock_jumps_keep_intervals_monotonic` under libfaketime.
#[test]
#[ignore = "run by wall_clock_jumps_keep_intervals_monotonic, under libfaketime"]
fn clock_jump_child() {
    let file = std::env::var(CHILD).expect("run by wall_clock_jumps_keep_intervals_monotonic");
    let jump = |offset: &str| std::fs::write(&file, format!("{offset}\n")).unwrap();
    let agent = Agent::default();
    let tx = agent.transaction("GET /during-the-jump");
    agent.harvest();

    for (offset, direction) in [("-3600", -1.0), ("+86400", 1.0)] {
        let before = SystemTime::now();
        let run = tx.start();
        std::thread::sleep(Duration::from_millis(50));
        jump(offset);
        let after = SystemTime::now();
        let moved = match after.duration_since(before) {
            Ok(forward) => forward.as_secs_f64(),
            Err(back) => -back.duration().as_secs_f64(),
        };
        assert!(
            moved * direction > 3_000.0,
            "libfaketime moved the wall clock by {moved} s"
        );
        std::thread::sleep(Duration::from_millis(50));
        drop(run);

        let harvest = agent.harvest();
        let run = harvest.transaction("GET /during-the-jump").expect("the run");
        assert!(
            (100_000_000..2_000_000_000).contains(&run.max_ns),
            "the run took ~100 ms on the monotonic clock, not {} ns",
            run.max_ns
        );
        assert!(harvest.elapsed >= Duration::from_millis(100) && harvest.elapsed < Duration::from_secs(2));
        assert_eq!(harvest.end.duration_since(harvest.start).unwrap(), harvest.elapsed);

        let encoded = Encoder::new(&ExportConfig::default(), "jumpy").metrics(
            &harvest,
            ExportStats::default(),
            SystemTime::UNIX_EPOCH,
        );
        let request = ExportMetricsServiceRequest::decode(encoded.as_bytes()).expect("the agent's metrics decode");
        for metric in request
            .resource_metrics
            .iter()
            .flat_map(|r| &r.scope_metrics)
            .flat_map(|s| &s.metrics)
        {
            if let Some(metric::Data::ExponentialHistogram(h)) = &metric.data {
                for point in &h.data_points {
                    assert!(
                        point.start_time_unix_nano <= point.time_unix_nano,
                        "{} starts after it ends",
                        metric.name
                    );
                }
            }
        }
        jump("+0");
    }
}
