//! `guardnest`: the command-line front end. Thin by design: parse flags, build the
//! configuration, and call the engine; every decision lives in `guardnest-core`.

mod cli;
mod client;
mod lists;
mod logging;
mod repair;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser as _;
use guardnest_core::control::{new_token, runtime_path, ControlServer, RuntimeInfo};
use guardnest_core::service::ServiceError;
use guardnest_core::sysproxy::SystemProxy;
use guardnest_core::{Blocklists, ProxyService, ServeError};
use tokio_util::sync::CancellationToken;

use cli::{Cli, Command, RunArgs};

/// Exit code when the listen address cannot be bound (in use, no permission).
const EXIT_BIND: u8 = 3;

/// A port already in use, for the exit code.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct BindFailed(String);

fn main() -> ExitCode {
    let cli = Cli::parse();
    match dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("guardnest: error: {e:#}");
            let bind_failed = e.chain().any(|c| {
                matches!(c.downcast_ref::<ServeError>(), Some(ServeError::Bind { .. }))
                    || c.downcast_ref::<BindFailed>().is_some()
            });
            ExitCode::from(if bind_failed { EXIT_BIND } else { 1 })
        }
    }
}

fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Run(args) => run(args),
        Command::Check(args) => lists::check(args),
        Command::Lists(args) => lists::lists(args),
        Command::Status(args) => Ok(client::status(&args.common, args.json)),
        Command::Enable(args) => Ok(client::change(&args.common, "/v1/enable")),
        Command::Disable(args) => Ok(client::change(&args.common, "/v1/disable")),
        Command::Restart(args) => Ok(client::change(&args.common, "/v1/restart")),
        Command::Repair(args) => repair::repair(args),
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

fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let config = args.config()?;
    logging::init(args.common.log_level.as_deref(), args.common.log_file.as_deref())?;
    let data_dir = args.common.data_dir();
    if let Err(e) = std::fs::create_dir_all(&data_dir) {
        tracing::warn!(dir = %data_dir.display(), error = %e, "cannot create the data directory");
    }
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
        let lists = Blocklists::load(&config.blocklist, Some(&data_dir)).context("cannot load lists")?;
        tracing::info!(names = lists.len(), lists = lists.status().len(), "lists loaded");
        let system = ProxyService::system_proxy_for(&config, &data_dir).unwrap_or_else(|e| {
            tracing::error!(error = %e, "system proxy backend unavailable; the system proxy will not be changed");
            SystemProxy::new(None, &data_dir)
        });
        let service = Arc::new(ProxyService::new(config.clone(), lists.clone(), system).with_data_dir(&data_dir));
        if let Err(e) = service.load_user_state().await {
            tracing::error!("cannot load your allowlist and added lists: {e}");
        }
        // A previous GuardNest that died with the system proxy set is repaired first.
        match service.repair().await {
            Ok(Some(message)) => tracing::warn!("{message}"),
            Ok(None) => {}
            Err(e) => tracing::error!(error = %e, "cannot repair the system proxy settings of a crashed session"),
        }
        let runtime_file = runtime_path(&data_dir);
        let mut control_task = None;
        if let Some(addr) = config.control.addr()? {
            let server = ControlServer::bind(addr).await.map_err(|e| {
                BindFailed(format!(
                    "cannot listen on {addr} for the control API: {e} (another GuardNest? use --control)"
                ))
            });
            let server = server?;
            let token = new_token().context("cannot create the control token")?;
            let info = RuntimeInfo { addr: server.local_addr(), token: token.clone(), pid: std::process::id() };
            // A full or read-only data dir must not stop the proxy; only the CLI loses track of it.
            if let Err(e) = info.store(&runtime_file) {
                tracing::warn!(
                    "cannot write {}: {e}; `guardnest status` and the other commands will not find this instance",
                    runtime_file.display()
                );
            }
            tracing::info!("control API on {}", server.local_addr());
            service.set_control_addr(server.local_addr());
            control_task = Some(tokio::spawn(server.run(service.clone(), token, shutdown.clone())));
        }
        // After the control API, which serves the PAC file in fail-open mode.
        match service.enable().await {
            Ok(change) => tracing::info!("{}", change.message),
            // The proxy runs; only the system-proxy step failed, and nothing is half-applied.
            Err(e @ ServiceError::SystemProxy(_)) => tracing::error!("{e}"),
            Err(e) => {
                // Nothing half-done: no runtime file pointing at an instance that is not there.
                shutdown.cancel();
                if control_task.is_some() {
                    let _ = std::fs::remove_file(&runtime_file);
                }
                return Err(anyhow::Error::new(e));
            }
        }

        let updater = tokio::spawn(lists.run_updater(shutdown.clone()));

        shutdown.cancelled().await;
        // Restore the system proxy and drain, bounded in time whatever happens.
        let bound = config.proxy.shutdown_timeout + Duration::from_secs(5);
        match tokio::time::timeout(bound, service.disable()).await {
            Ok(Ok(change)) => tracing::info!("{}", change.message),
            Ok(Err(e)) => tracing::error!("{e}"),
            Err(_) => tracing::error!("shutdown took longer than {bound:?}; exiting"),
        }
        if control_task.is_some() {
            let _ = std::fs::remove_file(&runtime_file);
        }
        let _ = updater.await;
        if let Some(t) = control_task {
            let _ = t.await;
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
