//! `guardnest`: the command-line front end. Thin by design: parse flags, build the
//! configuration, and call the engine; every decision lives in `guardnest-core`.

mod cli;
mod lists;
mod logging;

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser as _;
use guardnest_core::{Blocklists, Proxy, ServeError};
use tokio_util::sync::CancellationToken;

use cli::{Cli, Command, RunArgs};

/// Exit code when the listen address cannot be bound (in use, no permission).
const EXIT_BIND: u8 = 3;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("guardnest: error: {e:#}");
            let bind_failed = e.chain().any(|c| c.downcast_ref::<ServeError>().is_some());
            ExitCode::from(if bind_failed { EXIT_BIND } else { 1 })
        }
    }
}

fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Run(args) => run(args),
        Command::Check(args) => lists::check(args),
        Command::Lists(args) => lists::lists(args),
    }
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
        let lists = Blocklists::load(&config.blocklist, Some(&data_dir)).context("cannot load lists")?;
        tracing::info!(names = lists.len(), lists = lists.status().len(), "lists loaded");
        let proxy = Proxy::bind(config.proxy.clone(), config.health.clone(), lists.policy()).await?;
        tracing::info!("listening on {}", proxy.local_addr());

        let shutdown = CancellationToken::new();
        tokio::spawn(cancel_on_signal(shutdown.clone()));
        let updater = tokio::spawn(lists.run_updater(shutdown.clone()));
        proxy.run(shutdown).await;
        let _ = updater.await;
        Ok(ExitCode::SUCCESS)
    })
}

/// Cancels `token` on SIGINT or SIGTERM (Ctrl-C on Windows).
async fn cancel_on_signal(token: CancellationToken) {
    // If a signal cannot be watched, waiting on it must not end at once and stop the proxy.
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %e, "cannot watch Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                term.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate => {}
    }
    tracing::info!("shutdown requested");
    token.cancel();
}
