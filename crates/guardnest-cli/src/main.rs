//! `guardnest`: the command-line front end. Thin by design: parse flags, build the
//! configuration, and call the engine; every decision lives in `guardnest-core`.

// No unwrap on I/O or anything a user controls; tests may.
#![warn(clippy::unwrap_used)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

mod allow;
mod cli;
mod client;
mod lists;
mod logging;
mod repair;
mod stop;

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser as _;
use guardnest_core::error_chain;
use guardnest_core::service::lifecycle::{StartError, Started};
use guardnest_core::service::{Frontend, ServiceError};
use guardnest_core::{ProxyService, ServeError};
use tokio_util::sync::CancellationToken;

use cli::{Cli, Command, RunArgs};

/// Exit code when the listen address cannot be bound (in use, no permission).
const EXIT_BIND: u8 = 3;
/// Exit code when another GuardNest already uses the data directory.
const EXIT_RUNNING: u8 = 4;

/// A port already in use, for the exit code.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct BindFailed(String);

/// Another instance holds the data dir, for the exit code.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
struct AlreadyRunning(StartError);

fn main() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Run(_)) {
        end_quietly_on_a_closed_pipe();
    }
    match dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("guardnest: error: {e:#}");
            let bind_failed = e.chain().any(|c| {
                matches!(c.downcast_ref::<ServeError>(), Some(ServeError::Bind { .. }))
                    || c.downcast_ref::<BindFailed>().is_some()
            });
            let running = e.chain().any(|c| c.downcast_ref::<AlreadyRunning>().is_some());
            let in_use = e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::AddrInUse)
            });
            if in_use && !running {
                eprintln!("guardnest: another program uses that address: choose another with --listen 127.0.0.1:PORT (port 0 picks a free one)");
            }
            ExitCode::from(match (running, bind_failed) {
                (true, _) => EXIT_RUNNING,
                (_, true) => EXIT_BIND,
                _ => 1,
            })
        }
    }
}

/// `guardnest check X | head -1`: a one-shot command whose reader has gone ends as any Unix
/// tool does, by SIGPIPE's default action (Rust ignores the signal, so `println!` would
/// panic on the closed pipe). Never for `run`: a proxy must survive a peer's closed socket.
fn end_quietly_on_a_closed_pipe() {
    #[cfg(unix)]
    // SAFETY: sets this process's SIGPIPE disposition to the default, before any other
    // thread exists; no handler runs Rust code.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Run(args) => run(&args),
        Command::Check(args) => lists::check(&args),
        Command::Lists(args) => lists::lists(&args),
        Command::Status(args) => Ok(client::status(&args.common, args.json)),
        Command::Programs(args) => Ok(client::programs(&args.common, args.json)),
        Command::Enable(args) => Ok(client::change(&args.common, "/v1/enable")),
        Command::Disable(args) => Ok(client::change(&args.common, "/v1/disable")),
        Command::Restart(args) => Ok(client::change(&args.common, "/v1/restart")),
        Command::Pause(args) => Ok(client::pause(&args.common, args.minutes)),
        Command::Resume(args) => Ok(client::change(&args.common, "/v1/resume")),
        Command::Allow(args) => allow::allow(&args),
        Command::Allowed(args) => allow::allowed(&args),
        Command::Unallow(args) => allow::unallow(&args),
        Command::Repair(args) => repair::repair(&args),
        Command::Stop(args) => stop::stop(&args),
        Command::StartAgain(args) => stop::start_again(&args),
        Command::HashPassword => hash_password(),
    }
}

/// `guardnest hash-password`: the password comes from stdin so it stays out of shell history.
fn hash_password() -> anyhow::Result<ExitCode> {
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).context("cannot read the password from standard input")?;
    let password = line.trim_end_matches(['\r', '\n']);
    if password.is_empty() {
        anyhow::bail!("empty password (type it, or pipe it, on standard input)");
    }
    let phc = guardnest_core::access::hash_password(password).map_err(anyhow::Error::msg)?;
    println!("{phc}");
    Ok(ExitCode::SUCCESS)
}

fn run(args: &RunArgs) -> anyhow::Result<ExitCode> {
    let config = args.config()?;
    logging::init(args.common.log_level.as_deref(), args.common.log_file.as_deref())?;
    let data_dir = args.common.data_dir();
    let mut builder = match config.proxy.worker_threads {
        1 => tokio::runtime::Builder::new_current_thread(),
        0 => tokio::runtime::Builder::new_multi_thread(),
        n => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(n);
            b
        }
    };
    let runtime = builder.enable_all().thread_name("guardnest").build().context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let shutdown = CancellationToken::new();
        tokio::spawn(cancel_on_signal(shutdown.clone()));
        let grace = config.proxy.shutdown_timeout;
        // Lock, repair, lists, control API, protection on, updater: the core's one order.
        let started = ProxyService::builder(config, &data_dir).frontend(Frontend::Cli).start_up().await;
        let Started { service, enabled } = match started {
            Ok(s) => s,
            Err(e @ StartError::AlreadyRunning(_)) => return Err(anyhow::Error::new(AlreadyRunning(e))),
            Err(e @ StartError::Control { .. }) => return Err(anyhow::Error::new(BindFailed(error_chain(&e)))),
            Err(e) => return Err(e.into()),
        };
        match enabled {
            Ok(change) => tracing::info!("{}", change.message),
            // The proxy runs; only the system-proxy step failed, and nothing is half-applied.
            Err(e @ ServiceError::SystemProxy(_)) => tracing::error!("{}", error_chain(&e)),
            Err(e) => {
                // Nothing half-done: no runtime file pointing at an instance that is not there.
                let _ = service.shut_down(grace).await;
                return Err(anyhow::Error::new(e));
            }
        }
        // Ctrl-C, SIGTERM, or `guardnest stop` (the control API's quit, or on Windows the
        // session window's WM_CLOSE).
        let quit = service.quit_requested();
        tokio::select! {
            () = shutdown.cancelled() => {}
            () = quit.cancelled() => {}
        }
        // Restore the system proxy, drain, stop: bounded in time whatever happens.
        match service.shut_down(grace).await {
            Ok(change) => tracing::info!("{}", change.message),
            Err(e) => tracing::error!("{}", error_chain(&e)),
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// Installs SIGINT/SIGTERM handlers now (so a signal during startup is not fatal) and
/// returns a future that cancels `token` when one arrives (Ctrl-C on Windows).
#[cfg_attr(not(unix), allow(clippy::manual_async_fn))] // on unix the handlers are made before the future
fn cancel_on_signal(token: CancellationToken) -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let signals = {
        use tokio::signal::unix::{signal, SignalKind};
        (signal(SignalKind::interrupt()), signal(SignalKind::terminate()))
    };
    async move {
        #[cfg(unix)]
        {
            // A signal that cannot be watched must not stop the proxy at once.
            let wait = |s: std::io::Result<tokio::signal::unix::Signal>| async move {
                match s {
                    Ok(mut s) => {
                        s.recv().await;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot watch a signal");
                        std::future::pending::<()>().await;
                    }
                }
            };
            let (int, term) = signals;
            tokio::select! {
                _ = wait(int) => {}
                _ = wait(term) => {}
            }
        }
        #[cfg(windows)]
        {
            // Ctrl-C, Ctrl-Break, the console window closed, log-off and shutdown all restore
            // first (Ctrl-Break unhandled would end the process at once, settings unrestored).
            use tokio::signal::windows::{ctrl_break, ctrl_c, ctrl_close, ctrl_logoff, ctrl_shutdown};
            let (mut a, mut b, mut c, mut d, mut e) =
                match (ctrl_c(), ctrl_break(), ctrl_close(), ctrl_logoff(), ctrl_shutdown()) {
                    (Ok(a), Ok(b), Ok(c), Ok(d), Ok(e)) => (a, b, c, d, e),
                    _ => {
                        tracing::warn!("cannot watch console events");
                        std::future::pending().await
                    }
                };
            tokio::select! {
                _ = a.recv() => {}
                _ = b.recv() => {}
                _ = c.recv() => {}
                _ = d.recv() => {}
                _ = e.recv() => {}
            }
        }
        tracing::info!("shutdown requested");
        token.cancel();
    }
}
