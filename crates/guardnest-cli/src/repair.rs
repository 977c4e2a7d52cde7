//! `guardnest repair`: the user's proxy settings back, with no GuardNest running (the
//! decisions are the core's: `guardnest_core::service::repair`).

use std::process::ExitCode;

use guardnest_core::config::Config;
use guardnest_core::service::repair::{repair as put_back, RepairError};

use crate::cli::RepairArgs;

pub fn repair(args: RepairArgs) -> anyhow::Result<ExitCode> {
    let config = match &args.config {
        Some(path) => Config::from_file(path)?,
        None => Config::default(),
    };
    match put_back(&config, &args.common.data_dir(), args.listen, args.at_login) {
        Ok(message) => {
            println!("{message}");
            Ok(ExitCode::SUCCESS)
        }
        // At login a live GuardNest is not an error: it holds the settings and restores them.
        Err(e @ RepairError::Live { .. }) if args.at_login => {
            println!("{e}");
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => Err(e.into()),
    }
}
