//! Errors of service calls: a type per kind of failure, and the report front ends get
//! (see [`super::status::ErrorReport`]): its kind, the whole cause chain, and the
//! structured fields a window says in plain words.

use std::time::Duration;

use super::status::{ErrorKind, ErrorReport, InputReason};
use crate::server::ServeError;
use crate::sysproxy::SysProxyError;

/// Errors of service calls, as the UI and CLI show them.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The proxy could not start.
    #[error("cannot start the proxy")]
    Start(#[from] ServeError),
    /// The proxy runs, but the system-proxy step failed (nothing is left half-applied).
    #[error("the proxy is running, but the system proxy was not changed")]
    SystemProxy(#[source] SysProxyError),
    /// The old listener did not close in time.
    #[error("the old listener did not stop within {0:?}")]
    StopTimeout(Duration),
    /// The caller's input is not usable.
    #[error(transparent)]
    Input(#[from] InputError),
    /// A list could not be added.
    #[error(transparent)]
    Lists(#[from] crate::blocklist::ListError),
    /// The user's state could not be saved.
    #[error("cannot save {path}")]
    Save {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Input a call cannot use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    /// Not a host name.
    #[error("{0:?} is not a host name")]
    NotAHost(String),
    /// Not a host name, and why.
    #[error("{0:?} is not a host name: {1}")]
    NotAHostBecause(String, String),
    /// A pause out of range.
    #[error("pause for 1 to 1440 minutes")]
    PauseRange,
    /// A pause asked for while protection is off: there is no blocking to pause.
    #[error("protection is off: there is nothing to pause (turn it on with guardnest enable)")]
    NothingToPause,
    /// Taking a name off the allowlist that is allowed through a parent the user allowed:
    /// it stays allowed (the parent is what to take off).
    #[error("{name} is allowed because you allowed {parent}; take {parent} off to block it again")]
    AllowedByParent {
        /// The name asked for.
        name: String,
        /// The allowlist entry that allows it.
        parent: String,
    },
    /// Neither a URL nor an absolute path.
    #[error("{0:?} is not an http(s) URL or an absolute path")]
    NotAListLocation(String),
    /// Not one of the user's lists.
    #[error("{0} is not a list you added")]
    NotAUserList(String),
    /// Port 0 (or none) where a real port is needed.
    #[error("choose a port from 1 to 65535")]
    Port,
    /// The service has no data dir to keep this in.
    #[error("no data directory to keep {0} in")]
    NoDataDir(&'static str),
}

impl InputError {
    /// Why, as a closed set (for front ends that say it their own way).
    pub fn reason(&self) -> InputReason {
        match self {
            InputError::NotAHost(_) | InputError::NotAHostBecause(..) => InputReason::NotAHost,
            InputError::PauseRange => InputReason::PauseRange,
            InputError::NothingToPause => InputReason::NothingToPause,
            InputError::AllowedByParent { .. } => InputReason::AllowedByParent,
            InputError::NotAListLocation(_) => InputReason::NotAListLocation,
            InputError::NotAUserList(_) => InputReason::NotAUserList,
            InputError::Port => InputReason::Port,
            InputError::NoDataDir(_) => InputReason::NoDataDir,
        }
    }

    /// What was given, when it was text.
    pub fn input(&self) -> Option<String> {
        match self {
            InputError::NotAHost(s)
            | InputError::NotAHostBecause(s, _)
            | InputError::NotAListLocation(s)
            | InputError::NotAUserList(s)
            | InputError::AllowedByParent { name: s, .. } => Some(s.clone()),
            _ => None,
        }
    }
}

impl ServiceError {
    /// The kind, for front ends that act on it.
    pub fn kind(&self) -> ErrorKind {
        match self {
            ServiceError::Start(ServeError::Bind { source, .. }) if source.kind() == std::io::ErrorKind::AddrInUse => {
                ErrorKind::PortInUse
            }
            ServiceError::Start(_) => ErrorKind::Start,
            ServiceError::SystemProxy(_) => ErrorKind::SystemProxy,
            ServiceError::StopTimeout(_) => ErrorKind::StopTimeout,
            ServiceError::Input(_) => ErrorKind::Input,
            ServiceError::Lists(_) => ErrorKind::Lists,
            ServiceError::Save { .. } => ErrorKind::Save,
        }
    }

    /// The kind, the whole cause chain on one line, and the fields a window needs to say
    /// it in plain words (the address taken, the input refused, the list's problem).
    pub fn report(&self) -> ErrorReport {
        let mut report = ErrorReport::new(self.kind(), crate::error_chain(self));
        match self {
            ServiceError::Start(ServeError::Bind { addr, .. }) => report.addr = Some(*addr),
            ServiceError::Input(e) => {
                report.reason = Some(e.reason());
                report.input = e.input();
            }
            ServiceError::Lists(e) => report.problem = e.problem().map(Box::new),
            _ => {}
        }
        report
    }
}
