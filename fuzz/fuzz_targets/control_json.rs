//! JSON GuardNest reads back: the control API's runtime file (control.json), the app's
//! added lists (user-lists.json) and the system-proxy transaction (system-proxy.json),
//! whose restore plan must only ever touch keys that were saved.
#![no_main]

use guardnest_core::control::RuntimeInfo;
use guardnest_core::service::user::UserList;
use guardnest_core::sysproxy::{plan_restore, Transaction};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = serde_json::from_slice::<RuntimeInfo>(data);
    let _ = serde_json::from_slice::<Vec<UserList>>(data);
    if let Ok(t) = serde_json::from_slice::<Transaction>(data) {
        let plan = plan_restore(&t.saved, &t.applied, &t.applied);
        for key in plan.writes.keys() {
            assert!(t.saved.contains_key(key), "restore writes {key:?}, which was never saved");
        }
    }
});
