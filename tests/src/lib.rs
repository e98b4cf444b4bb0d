//! Helpers for Kuroko's end-to-end tests: run the project's own commands as
//! real processes, the way a user would, and read what they print.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::Duration;

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A program of the workspace as `cargo test --workspace` built it before
/// any test ran: `name` is a binary (`kuroko`) or `examples/NAME`. A test
/// never builds one itself (on a loaded machine that would take minutes,
/// and would race an edit of the sources); when the program is missing, the
/// panic says what to build.
pub fn built(name: &str) -> PathBuf {
    // This test runs as target/<profile>/deps/<test>-<hash>.
    let exe = std::env::current_exe().expect("the test's own path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("the test runs from target/<profile>/deps");
    let program = profile_dir.join(name);
    assert!(
        program.is_file(),
        "{} is not built: run the tests with `cargo test --workspace` (which builds the \
         reporter's binary and the agent's examples), or build it with `cargo build --workspace --examples`",
        program.display()
    );
    program
}

/// The reporter's binary, `kuroko`.
pub fn kuroko() -> PathBuf {
    built("kuroko")
}

/// `kuroko serve --config <config>` started and ready: the running reporter
/// and its OTLP/HTTP base URL (which serves the API and UI too), `https://`
/// when the configuration sets `[tls]`.
pub fn serve(config: &Path) -> (Running, String) {
    let config = config.to_str().expect("a UTF-8 config path");
    let mut reporter = Running::start(&kuroko(), &["serve", "--config", config]);
    let ready = reporter.wait_for("OTLP/HTTP on", Duration::from_secs(60));
    let http = ready
        .split("OTLP/HTTP on ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .expect("the address line")
        .trim()
        .to_owned();
    let scheme = if ready.contains("TLS on both ports") {
        "https"
    } else {
        "http"
    };
    (reporter, format!("{scheme}://{http}"))
}

/// One of the agent's examples.
pub fn example(name: &str) -> PathBuf {
    built(&format!("examples/{name}"))
}

/// A program of the workspace ([`built`]) running, whose stdout is read
/// line by line.
pub struct Running {
    child: Child,
    lines: Receiver<String>,
    /// Every line read so far.
    pub seen: Vec<String>,
}

impl Running {
    /// Starts `program` with `args`, in the workspace's root.
    pub fn start(program: &Path, args: &[&str]) -> Running {
        Running::start_with(program, args, &[])
    }

    /// [`Running::start`] with environment variables `env` set.
    pub fn start_with(program: &Path, args: &[&str], env: &[(&str, &str)]) -> Running {
        let mut child = Command::new(program)
            .args(args)
            .envs(env.iter().copied())
            .current_dir(workspace_root())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("{} can be started: {e}", program.display()));
        let stdout: ChildStdout = child.stdout.take().expect("piped stdout");
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Running {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits up to `timeout` for a line containing `needle`, and returns it.
    pub fn wait_for(&mut self, needle: &str, timeout: Duration) -> String {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "no line with {needle:?} within {timeout:?}; output so far:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// Waits for the process to exit by itself, collecting the rest of its
    /// output; panics if it fails or outlives `timeout`.
    pub fn finish(mut self, timeout: Duration) -> Vec<String> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("process status") {
                self.seen.extend(self.lines.try_iter());
                assert!(
                    status.success(),
                    "exited with {status}; output:\n{}",
                    self.seen.join("\n")
                );
                return std::mem::take(&mut self.seen);
            }
            if std::time::Instant::now() >= deadline {
                let _ = self.child.kill();
                panic!("still running after {timeout:?}; output:\n{}", self.seen.join("\n"));
            }
            self.seen.extend(self.lines.try_iter());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

/// Runs `program` with `args` to its end, in the workspace's root, with
/// `env` set; returns its stdout, or panics with its stderr when it fails.
pub fn output(program: &Path, args: &[&str], env: &[(&str, &str)]) -> String {
    let output = Command::new(program)
        .args(args)
        .envs(env.iter().copied())
        .current_dir(workspace_root())
        .output()
        .unwrap_or_else(|e| panic!("{} can be started: {e}", program.display()));
    assert!(
        output.status.success(),
        "{} {} failed: {}\n{}",
        program.display(),
        args.join(" "),
        String::from_utf8_lossy(&output.stderr),
        String::from_utf8_lossy(&output.stdout)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}
