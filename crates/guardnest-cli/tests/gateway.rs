//! Gateway mode from the command line: the open-proxy refusal and the password hash tool.
//! The two-instances-behind-HAProxy test is in `haproxy.rs`.

mod support;

use std::io::Write;
use std::process::{Command, Stdio};

use support::BIN;

/// Reachable from the network with no [access] section: refused before anything is bound.
#[test]
fn refuses_to_be_an_open_proxy() {
    let data = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .arg("run")
        .arg("--data-dir")
        .arg(data.path())
        .args(["--no-default-lists", "--control", "none", "--listen", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("reachable from other machines") && err.contains("[access] allow"), "{err}");
}

#[test]
fn hash_password_prints_an_argon2_hash() {
    let mut child =
        Command::new(BIN).arg("hash-password").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(b"s3cret\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let phc = String::from_utf8(out.stdout).unwrap();
    assert!(phc.starts_with("$argon2id$"), "{phc}");
    assert!(guardnest_core::access::verify("s3cret", phc.trim()));
}
