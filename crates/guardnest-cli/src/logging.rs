//! The design's ProxyLogger, as a tracing subscriber: level from the flag or $RUST_LOG,
//! output to standard error or appended to a file.

use std::fs::OpenOptions;
use std::io::IsTerminal as _;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber; call once, before anything logs.
pub fn init(level: Option<&str>, file: Option<&Path>) -> anyhow::Result<()> {
    let filter = match level {
        Some(l) => EnvFilter::try_new(l).with_context(|| format!("invalid --log-level {l:?}"))?,
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    };
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_target(false);
    match file {
        Some(path) => {
            let f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("cannot open log file {}", path.display()))?;
            // Opened for appending and shared: each event is one write of a whole line.
            builder.with_ansi(false).with_writer(Arc::new(f)).init();
        }
        None => builder.with_ansi(std::io::stderr().is_terminal()).with_writer(std::io::stderr).init(),
    }
    Ok(())
}
