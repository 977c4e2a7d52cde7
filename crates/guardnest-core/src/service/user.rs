//! What the user does with the lists, through the service: allow a name and undo it,
//! check a name, add and remove their own lists. What is kept, and where, is [`super::kept`]
//! (re-exported here).

use std::path::PathBuf;

pub use super::kept::*;
use super::kept::{save_json, user_allowlist_spec};
use super::{Change, InputError, ProxyService, ServiceError};
use crate::blocklist::{Role, Verdict};
use crate::config::SourceSpec;

impl ProxyService {
    fn user_dir(&self, what: &'static str) -> Result<&PathBuf, ServiceError> {
        self.data_dir.as_ref().ok_or(ServiceError::Input(InputError::NoDataDir(what)))
    }

    /// Loads what the user added: their allowlist and their lists. Called by
    /// [`super::lifecycle::Builder::start_up`]; without a data dir there is nothing to load.
    pub async fn load_user_state(&self) -> Result<(), ServiceError> {
        match &self.data_dir {
            Some(dir) => load_into(&self.lists, dir).await,
            None => Ok(()),
        }
    }

    /// Never blocks `name` (and its subdomains) again: it goes into the user's allowlist,
    /// which survives restarts. A URL or `host:port` allows its host.
    pub async fn allow_domain(&self, name: &str) -> Result<Change, ServiceError> {
        let allowlist = Allowlist::of(self.user_dir("the allowlist")?);
        let (host, added) = allowlist.add(name)?;
        if !added {
            return Ok(Change { changed: false, message: format!("{host} is already allowed") });
        }
        self.reload_allowlist(&allowlist).await?;
        Ok(Change { changed: true, message: format!("{host} is allowed from now on") })
    }

    /// Undoes [`ProxyService::allow_domain`]: `name` leaves the user's allowlist, and is
    /// blocked again if a list has it.
    pub async fn unallow_domain(&self, name: &str) -> Result<Change, ServiceError> {
        let allowlist = Allowlist::of(self.user_dir("the allowlist")?);
        let (host, removed) = allowlist.remove(name)?;
        if !removed {
            // Allowed through a parent the user allowed: refused, saying which name to take
            // off (it stays allowed).
            if let Ok(Verdict::Exempt(m)) = self.check_domain(&host.to_string()) {
                if &*m.list == USER_ALLOWLIST_NAME {
                    return Err(
                        InputError::AllowedByParent { name: host.to_string(), parent: m.rule.to_string() }.into()
                    );
                }
            }
            return Ok(Change { changed: false, message: format!("{host} was not on your allowlist") });
        }
        self.reload_allowlist(&allowlist).await?;
        Ok(Change { changed: true, message: format!("{host} is no longer allowed") })
    }

    /// The names on the user's own allowlist, in order.
    pub fn allowed(&self) -> Vec<String> {
        self.data_dir.as_deref().map(|d| Allowlist::of(d).names()).unwrap_or_default()
    }

    async fn reload_allowlist(&self, allowlist: &Allowlist) -> Result<(), ServiceError> {
        let spec = user_allowlist_spec(allowlist.path());
        if !self.lists.add_source(spec.clone(), Role::Allow).await? {
            self.lists.reread(spec.location()).await?;
        }
        Ok(())
    }

    /// What the lists say about a name: blocked (by which list and rule) or allowed. A URL
    /// or `host:port` is checked by its host.
    pub fn check_domain(&self, name: &str) -> Result<Verdict, ServiceError> {
        let host = crate::domain::host_of_input(name)
            .map_err(|e| ServiceError::Input(InputError::NotAHostBecause(name.trim().to_string(), e.to_string())))?;
        Ok(self.lists.check(&host))
    }

    /// [`ProxyService::check_domain`] as front ends show it: the host in normal form (and
    /// in Unicode for an IDN), and whether the user's own allowlist decided.
    pub fn check(&self, name: &str) -> Result<super::status::CheckAnswer, ServiceError> {
        let verdict = self.check_domain(name)?;
        let shown = crate::domain::host_of_input(name).map_or_else(|_| name.to_string(), |h| h.to_string());
        let mut answer = super::status::CheckAnswer::new(shown, verdict);
        answer.by_you = answer.exempt && answer.list.as_deref() == Some(USER_ALLOWLIST_NAME);
        Ok(answer)
    }

    /// Adds a block list (a URL, or a file path; `~/` is the home folder), kept across
    /// restarts. It is read or downloaded now: one that cannot be (a 404, an error page,
    /// no such file) is refused with why, and not kept.
    pub async fn add_list(&self, location: &str) -> Result<Change, ServiceError> {
        let location = list_location(location)?;
        let dir = self.user_dir("your lists")?.clone();
        let added = self.lists.add_checked(SourceSpec::Location(location.clone()), Role::Block).await?;
        if !added {
            return Ok(Change { changed: false, message: format!("{location} is already a list") });
        }
        let mut lists = user_lists(&dir);
        lists.push(UserList { location: location.clone(), allow: false });
        if let Err(e) = save_json(&dir.join(USER_LISTS), &lists) {
            self.lists.remove_source(&location).await;
            return Err(e);
        }
        // Now it is the user's (removable): the watchers saw the list come before that.
        self.lists.changes().bump();
        let state = self.lists.status().into_iter().find(|s| s.location == location);
        let entries = state.map_or(0, |s| s.entries);
        Ok(Change {
            changed: true,
            message: format!("added {location}: {}", super::status::plural(entries, "name", "names")),
        })
    }

    /// Removes a list the user added.
    pub async fn remove_list(&self, location: &str) -> Result<Change, ServiceError> {
        let dir = self.user_dir("your lists")?.clone();
        let mut lists = user_lists(&dir);
        let before = lists.len();
        lists.retain(|l| l.location != location);
        if lists.len() == before {
            return Err(ServiceError::Input(InputError::NotAUserList(location.to_string())));
        }
        save_json(&dir.join(USER_LISTS), &lists)?;
        self.lists.remove_source(location).await;
        Ok(Change { changed: true, message: format!("removed {location}") })
    }

    /// Lists the user added, in order.
    pub fn user_lists(&self) -> Vec<UserList> {
        self.data_dir.as_deref().map(user_lists).unwrap_or_default()
    }
}
