//! `guardnest repair`: the user's proxy settings back, with no GuardNest running (the
//! decisions are the core's: `guardnest_core::service::repair`).

use std::process::ExitCode;

use guardnest_core::service::repair::{repair as put_back, RepairError};
use guardnest_core::ProxyService;

use crate::cli::RepairArgs;

pub fn repair(args: &RepairArgs) -> anyhow::Result<ExitCode> {
    let config = ProxyService::config_for(&args.common.data_dir(), args.config.as_deref())?;
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
