//! Captures the server's GOAWAY warnings (target `lms::server::goaway`) so tests can read them.

use std::{
    io,
    sync::{Mutex, Once},
};

use tracing::Level;
use tracing_subscriber::{filter::Targets, fmt, prelude::*};

static CAPTURED: Mutex<Vec<u8>> = Mutex::new(Vec::new());

/// Appends formatted log lines to [`CAPTURED`].
struct Capture;

impl io::Write for Capture {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        CAPTURED.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Installs the capturing subscriber (once per test binary; `TEST_LOG` also prints everything).
pub(crate) fn install() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let capture = fmt::layer()
            .with_writer(|| Capture)
            .with_ansi(false)
            .with_filter(Targets::new().with_target("lms::server::goaway", Level::WARN));
        let print = std::env::var_os("TEST_LOG").is_some().then(|| {
            fmt::layer()
                .with_test_writer()
                .with_filter(tracing_subscriber::EnvFilter::new(
                    "info,h2=warn,hyper=warn",
                ))
        });
        // Another subscriber may be installed already (helpers' TEST_LOG): then nothing is captured
        // and the tests that read logs say so.
        let _ = tracing_subscriber::registry()
            .with(capture)
            .with(print)
            .try_init();
    });
}

/// Returns the captured lines that contain every one of `needles`.
pub(crate) fn lines_with(needles: &[&str]) -> Vec<String> {
    let captured = CAPTURED.lock().unwrap();
    String::from_utf8_lossy(&captured)
        .lines()
        .filter(|line| needles.iter().all(|needle| line.contains(needle)))
        .map(str::to_owned)
        .collect()
}
