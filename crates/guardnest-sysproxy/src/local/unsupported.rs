//! Other systems: GuardNest does not know how to ask them, so reading fails and a
//! gateway's `self` fails closed.

use std::time::Duration;

use ipnet::IpNet;

use super::LocalError;

pub(super) fn read() -> Result<Vec<IpNet>, LocalError> {
    Err(LocalError::Unsupported)
}

pub(super) struct Changes;

impl Changes {
    pub(super) fn subscribe() -> Result<Self, LocalError> {
        Err(LocalError::Unsupported)
    }

    pub(super) fn wait(&mut self, _timeout: Duration) -> Result<bool, LocalError> {
        Err(LocalError::Unsupported)
    }
}
