//! The data directory's files are for their owner alone, checked on the files themselves:
//!
//! - control.json: mode 0600 on Unix; on Windows a protected DACL with one entry, the
//!   current user with full access, read back with GetNamedSecurityInfo.
//! - a data directory GuardNest creates: mode 0700 on Unix; on Windows the same single
//!   entry, inherited by what is created inside.
//! - a link planted where a file of the data directory goes is never followed: the file it
//!   points at is neither created nor read, and the error names the link.
//!
//! Wine 8 does not store file security descriptors, so there the DACL checks are a named
//! platform limit (the descriptors GuardNest creates files and directories with are checked
//! under Wine too, by the crate's unit tests `the_private_dacl_is_the_owner_alone` and
//! `the_private_dir_dacl_is_the_owner_alone_and_inherited`).

use std::fs::OpenOptions;

use guardnest_sysproxy::fsutil::{
    create_private_dir, open_no_follow, read_to_string_no_follow, write_atomic, NotAFile,
};
use guardnest_testkit::{passed, Outcome};

guardnest_testkit::main!(
    control_json_is_readable_by_its_owner_only,
    a_new_data_dir_is_private_to_its_user,
    a_link_where_a_data_dir_file_goes_is_never_followed,
);

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

fn a_new_data_dir_is_private_to_its_user() -> Outcome {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("share").join("guardnest");
    assert!(create_private_dir(&data).unwrap(), "not created");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        for d in [&data, &root.path().join("share")] {
            let mode = std::fs::metadata(d).unwrap().permissions().mode() & 0o7777;
            assert_eq!(mode, 0o700, "{} is mode {mode:o}", d.display());
        }
    }
    #[cfg(windows)]
    {
        use guardnest_sysproxy::fsutil::{current_user_sid, dacl};
        let d = dacl(&data).unwrap();
        if guardnest_testkit::under_wine() {
            eprintln!("under Wine, the data directory's DACL reads back as {d:?}");
            return guardnest_testkit::platform_limit(
                "Wine 8 does not store file security descriptors: a directory created with a protected owner-only \
                 DACL reads back with the DACL Wine derives from its Unix mode; the descriptor itself is checked \
                 by the unit test the_private_dir_dacl_is_the_owner_alone_and_inherited",
            );
        }
        let me = current_user_sid().unwrap();
        assert!(d.protected, "inherits its parent's entries: {d:?}");
        assert_eq!(d.entries, [(true, me, 0x001F_01FF)], "not owner-only: {d:?}");
        assert_eq!(d.flags, [3], "not inherited by what is created inside: {d:?}");
    }
    passed()
}

fn a_link_where_a_data_dir_file_goes_is_never_followed() -> Outcome {
    let root = tempfile::tempdir().unwrap();
    let (target, link) = (root.path().join("elsewhere.lock"), root.path().join("instance.lock"));
    #[cfg(unix)]
    std::os::unix::fs::symlink(&target, &link).unwrap();
    #[cfg(windows)]
    if let Err(e) = std::os::windows::fs::symlink_file(&target, &link) {
        return match guardnest_testkit::under_wine() {
            true => guardnest_testkit::platform_limit(format!(
                "Wine 8 cannot create a symbolic link (CreateSymbolicLinkW: {e}), so none can be planted; \
                 open_no_follow opens with FILE_FLAG_OPEN_REPARSE_POINT and refuses a reparse point"
            )),
            false => guardnest_testkit::skip(format!(
                "cannot create a symbolic link here ({e}): needs Developer Mode or the privilege"
            )),
        };
    }
    let mut create = OpenOptions::new();
    create.create(true).truncate(false).write(true);
    // Measured: Wine 8's CreateSymbolicLinkW reports success, but the link does not read
    // back as one (symlink_metadata: NotFound), and opening its name makes a plain file there.
    #[cfg(windows)]
    {
        let seen = std::fs::symlink_metadata(&link).map(|m| m.file_type()).map_err(|e| e.kind());
        if !seen.as_ref().is_ok_and(std::fs::FileType::is_symlink) {
            let opened = open_no_follow(&link, &mut create).map(drop);
            assert!(!target.exists(), "the link's target was created");
            return guardnest_testkit::platform_limit(format!(
                "Wine 8's CreateSymbolicLinkW reports success but the link does not read back as one \
                 (symlink_metadata: {seen:?}; opening its name gave {opened:?}, the target was not created), \
                 so the refusal of a reparse point (FILE_FLAG_OPEN_REPARSE_POINT) cannot be seen here"
            ));
        }
    }
    let e = open_no_follow(&link, &mut create).unwrap_err();
    assert!(!target.exists(), "the link's target was created");
    assert_eq!(NotAFile::of(&e).map(|n| n.path.clone()), Some(link.clone()), "{e}");
    assert!(e.to_string().contains("instance.lock is a") && e.to_string().contains("link"), "{e}");
    std::fs::write(&target, "planted").unwrap();
    let e = read_to_string_no_follow(&link).unwrap_err();
    assert!(NotAFile::of(&e).is_some(), "read through the link: {e}");
    passed()
}
