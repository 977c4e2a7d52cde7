//! The control token's file is for its owner alone, checked on the file itself: mode 0600
//! on Unix; on Windows a protected DACL with one entry, the current user with full access,
//! read back with GetNamedSecurityInfo. Wine 8 does not store file security descriptors,
//! so there the check is a named platform limit (the descriptor GuardNest creates the file
//! with is checked under Wine too, by the crate's unit test `the_private_dacl_is_the_owner_alone`).

use guardnest_sysproxy::fsutil::write_atomic;
use guardnest_testkit::{passed, Outcome};

guardnest_testkit::main!(control_json_is_readable_by_its_owner_only);

fn control_json_is_readable_by_its_owner_only() -> Outcome {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("control.json");
    write_atomic(&path, b"{\"token\":\"secret\"}", true).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    }
    #[cfg(windows)]
    {
        use guardnest_sysproxy::fsutil::{current_user_sid, dacl};
        let d = dacl(&path).unwrap();
        if guardnest_testkit::under_wine() {
            eprintln!("under Wine, control.json's DACL reads back as {d:?}");
            return guardnest_testkit::platform_limit(
                "Wine 8 does not store file security descriptors: a file created with a protected owner-only DACL \
                 reads back with the DACL Wine derives from its Unix mode (SYSTEM and the user, not protected); \
                 the descriptor itself is checked by the unit test the_private_dacl_is_the_owner_alone",
            );
        }
        let me = current_user_sid().unwrap();
        assert!(d.protected, "inherits its directory's entries: {d:?}");
        assert_eq!(d.entries, [(true, me, 0x001F_01FF)], "not owner-only: {d:?}");
    }
    passed()
}
