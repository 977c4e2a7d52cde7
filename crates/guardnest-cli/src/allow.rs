//! `guardnest allow NAME`, `guardnest allowed`, `guardnest unallow NAME`: the user's own
//! allowlist (the one the app's "Allow" button fills). With a GuardNest running they go
//! through its control API and take effect at once; without one they change the data
//! dir's file, which the next start reads. The decisions (what a name is, where it is
//! kept) are the core's.

use std::process::ExitCode;

use guardnest_core::service::user::Allowlist;
use guardnest_core::service::{InputError, ServiceError};

use crate::cli::{ClientArgs, NameArgs};
use crate::client::{finish, Failure, Instance};
use crate::lists::encode;

/// `guardnest allow NAME`.
pub fn allow(args: &NameArgs) -> anyhow::Result<ExitCode> {
    change(args, "add", |a, name| {
        let (host, added) = a.add(name)?;
        Ok(match added {
            true => format!("{host} is allowed from now on"),
            false => format!("{host} is already allowed"),
        })
    })
}

/// `guardnest unallow NAME`.
pub fn unallow(args: &NameArgs) -> anyhow::Result<ExitCode> {
    change(args, "remove", |a, name| {
        let (host, removed) = a.remove(name)?;
        if removed {
            return Ok(format!("{host} is no longer allowed"));
        }
        // Allowed through a parent on the allowlist: it stays allowed, as a running
        // GuardNest says.
        let name = host.to_string();
        match a.names().into_iter().find(|p| name.ends_with(&format!(".{p}"))) {
            Some(parent) => Err(InputError::AllowedByParent { name, parent }.into()),
            None => Ok(format!("{host} was not on your allowlist")),
        }
    })
}

fn change(
    args: &NameArgs,
    action: &str,
    offline: impl FnOnce(&Allowlist, &str) -> Result<String, ServiceError>,
) -> anyhow::Result<ExitCode> {
    if let Some(instance) = Instance::running(&args.common) {
        let path = format!("/v1/allowlist/{action}?name={}", encode(args.name.trim()));
        let answer = instance.call(reqwest::Method::POST, &path);
        return Ok(finish(answer.map(|v| v["message"].as_str().unwrap_or("done").to_string())));
    }
    let data_dir = args.common.data_dir();
    std::fs::create_dir_all(&data_dir)?;
    let allowlist = Allowlist::of(&data_dir);
    allowlist.create()?;
    Ok(match offline(&allowlist, &args.name) {
        Ok(line) => finish(Ok(format!("{line} (in {}; no GuardNest is running)", allowlist.path().display()))),
        Err(e @ ServiceError::Input(_)) => finish(Err(Failure::Rejected(e.to_string()))),
        Err(e) => return Err(e.into()),
    })
}

/// `guardnest allowed`.
pub fn allowed(args: &ClientArgs) -> anyhow::Result<ExitCode> {
    let names: Vec<String> = match Instance::running(&args.common) {
        Some(instance) => match instance.call(reqwest::Method::GET, "/v1/allowlist") {
            Ok(v) => serde_json::from_value::<guardnest_core::control::Allowed>(v).map(|a| a.names).unwrap_or_default(),
            Err(e) => return Ok(finish(Err(e))),
        },
        None => Allowlist::of(&args.common.data_dir()).names(),
    };
    if names.is_empty() {
        println!("your allowlist is empty (guardnest allow NAME adds a name)");
    }
    for name in names {
        println!("{name}");
    }
    Ok(ExitCode::SUCCESS)
}
