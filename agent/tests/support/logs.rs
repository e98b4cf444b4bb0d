//! The agent's warnings, captured: one process-wide subscriber writing into
//! a buffer (the exporter logs from its own task, on any thread). Tests in
//! one binary share it, so each looks for lines that name its own port,
//! written after its own [`mark`]: a port freed by an earlier test (or an
//! earlier round of the same test) can be bound again, and that test's lines
//! name it too.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

#[derive(Clone)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn buffer() -> &'static Buffer {
    static BUFFER: OnceLock<Buffer> = OnceLock::new();
    BUFFER.get_or_init(|| {
        let buffer = Buffer(Arc::default());
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::WARN)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("the only global subscriber");
        buffer
    })
}

/// Starts capturing (idempotent); call before the code that logs.
pub fn capture() {
    buffer();
}

/// Where the log ends now: [`lines_since`] and [`wait_for_line_since`] look
/// only at what is written after it.
pub fn mark() -> usize {
    buffer().0.lock().unwrap().len()
}

/// The captured lines that contain every one of `needles`.
pub fn lines(needles: &[&str]) -> Vec<String> {
    lines_since(0, needles)
}

/// The lines written after `mark` that contain every one of `needles`.
pub fn lines_since(mark: usize, needles: &[&str]) -> Vec<String> {
    let bytes = buffer().0.lock().unwrap();
    let text = String::from_utf8_lossy(bytes.get(mark..).unwrap_or_default()).into_owned();
    text.lines()
        .filter(|line| needles.iter().all(|n| line.contains(n)))
        .map(str::to_owned)
        .collect()
}

/// Waits (up to 20 s) for a captured line that contains every one of `needles`.
pub async fn wait_for_line(needles: &[&str]) -> String {
    wait_for_line_since(0, needles).await
}

/// Waits (up to 20 s) for a line written after `mark` that contains every
/// one of `needles`.
pub async fn wait_for_line_since(mark: usize, needles: &[&str]) -> String {
    for _ in 0..1_000 {
        if let Some(line) = lines_since(mark, needles).into_iter().next() {
            return line;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let text = String::from_utf8_lossy(&buffer().0.lock().unwrap()).into_owned();
    panic!("no log line with {needles:?} after byte {mark}; the log:\n{text}");
}
