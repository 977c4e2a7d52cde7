//! Running the OS's proxy tools: bounded in time, every exit status and stderr checked.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::SysProxyError;

/// Longest any one tool may run.
const TOOL_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs `program args…` and returns its standard output, or a clear error.
pub(super) fn run(backend: &'static str, program: &str, args: &[&str]) -> Result<String, SysProxyError> {
    let command = format!("{program} {}", args.join(" "));
    let mut child = match Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(SysProxyError::MissingTool { backend, tool: program.to_string() })
        }
        Err(e) => return Err(SysProxyError::Command { command, detail: e.to_string() }),
    };
    // Read both pipes while the tool runs: a tool that fills a pipe (4 KiB on Windows) would
    // otherwise block before it exits.
    let drain = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_string(&mut text);
            }
            text
        })
    };
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as Box<dyn std::io::Read + Send>));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as Box<dyn std::io::Read + Send>));
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() > TOOL_TIMEOUT => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(SysProxyError::Command { command, detail: format!("no answer after {TOOL_TIMEOUT:?}") });
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => return Err(SysProxyError::Command { command, detail: e.to_string() }),
        }
    };
    let out = stdout.join().unwrap_or_default();
    let err = stderr.join().unwrap_or_default();
    if !status.success() {
        return Err(SysProxyError::Command { command, detail: format!("{status}: {}", err.trim()) });
    }
    Ok(out)
}

/// Whether `program` can be found on PATH.
pub(super) fn exists(program: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
        .unwrap_or(false)
}
