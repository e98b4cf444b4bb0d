//! `kuroko demo` run as a user runs it, by the binary cargo built for the
//! tests: shared by `demo.rs` and `readme.rs` through `#[path]`.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A fresh folder for one test, under the system's temporary directory.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kuroko-demo-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Runs `kuroko demo ARGS` in `cwd` on a port the system picks, until it
/// stops by itself (give `--minutes`); what it printed.
pub fn demo(cwd: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kuroko"))
        .arg("demo")
        .args(["--port", "0"])
        .args(args)
        .current_dir(cwd)
        .env("RUST_LOG", "warn")
        .output()
        .expect("the kuroko binary cargo built for this test starts")
}
