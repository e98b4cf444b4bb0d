//! Helpers for Kuroko's end-to-end tests: run the project's own commands as
//! real processes, the way a user would, and read what they print.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::Duration;

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A process started with `cargo run`, whose stdout is read line by line.
pub struct Running {
    child: Child,
    lines: Receiver<String>,
    /// Every line read so far.
    pub seen: Vec<String>,
}

impl Running {
    /// Starts `cargo run -q <args>` in the workspace (building what is stale).
    pub fn cargo_run(args: &[&str]) -> Running {
        Running::cargo_run_with(args, &[])
    }

    /// [`Running::cargo_run`] with environment variables `env` set.
    pub fn cargo_run_with(args: &[&str], env: &[(&str, &str)]) -> Running {
        let mut child = Command::new(env!("CARGO"))
            .arg("run")
            .arg("-q")
            .args(args)
            .envs(env.iter().copied())
            .current_dir(workspace_root())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("cargo can be started");
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

/// Runs `cargo run -q <args>` in the workspace to its end, with `env` set;
/// returns its stdout, or panics with its stderr when it fails.
pub fn cargo_output(args: &[&str], env: &[(&str, &str)]) -> String {
    let output = Command::new(env!("CARGO"))
        .arg("run")
        .arg("-q")
        .args(args)
        .envs(env.iter().copied())
        .current_dir(workspace_root())
        .output()
        .expect("cargo can be started");
    assert!(
        output.status.success(),
        "cargo run {} failed: {}\n{}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr),
        String::from_utf8_lossy(&output.stdout)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}
