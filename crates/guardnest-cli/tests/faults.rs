//! Faults around the running proxy: a list server that sends 2 GB, a data directory that
//! is full or cannot be written, and SIGKILL in the middle of saving a list. Filling or
//! freezing the disk mounts a tmpfs, which needs root: reported as skipped otherwise.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use guardnest_testkit::{passed, platform_limit, skip, Outcome};
use support::{connect_status, echo_server, Running, BIN, WAIT};

guardnest_testkit::main!(
    a_2gb_list_is_cut_off_and_the_old_one_kept,
    an_unwritable_data_dir_still_blocks_and_says_why,
    a_full_disk_keeps_the_proxy_serving,
    a_read_only_data_dir_keeps_the_proxy_serving,
    sigkill_during_a_list_save_leaves_a_good_next_start,
);

/// What the list server sends for the n-th request (0-based).
type Script = dyn Fn(usize, &mut TcpStream) -> std::io::Result<()> + Send + Sync;

/// A list server on loopback running `script` per request; returns its URL and a counter.
fn list_server(script: Arc<Script>) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/list.txt", listener.local_addr().unwrap());
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    std::thread::spawn(move || {
        for mut s in listener.incoming().map_while(Result::ok) {
            let n = c.fetch_add(1, Ordering::SeqCst);
            let script = script.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(s.try_clone().unwrap());
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                    line.clear();
                }
                let _ = script(n, &mut s);
            });
        }
    });
    (url, count)
}

fn small_list(s: &mut TcpStream, body: &str, etag: &str) -> std::io::Result<()> {
    write!(s, "HTTP/1.1 200 OK\r\nETag: {etag}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len())
}

/// Streams list lines, chunked (no length announced), until `total` bytes or the client leaves.
fn endless(s: &mut TcpStream, total: u64) -> std::io::Result<()> {
    write!(s, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n")?;
    let chunk: String = (0..4096).map(|i| format!("n{i:07}.test\n")).collect();
    let framed = format!("{:x}\r\n{chunk}\r\n", chunk.len());
    let mut sent = 0u64;
    while sent < total {
        s.write_all(framed.as_bytes())?;
        sent += chunk.len() as u64;
    }
    s.write_all(b"0\r\n\r\n")
}

fn config(dir: &Path, url: &str, extra: &str) -> std::path::PathBuf {
    let path = dir.join("guardnest.toml");
    std::fs::write(
        &path,
        format!(
            "[proxy]\nlisten = \"127.0.0.1:0\"\n[blocklist]\nsources = [\"{url}\"]\ndefault_lists = false\n\
             update_interval = \"1s\"\n{extra}"
        ),
    )
    .unwrap();
    path
}

fn run(config: &Path, data: &Path) -> Running {
    let mut cmd = Command::new(BIN);
    cmd.arg("run").arg("--config").arg(config).arg("--data-dir").arg(data).args(["--control", "none"]);
    cmd.env("RUST_LOG", "info");
    Running::start(&mut cmd)
}

/// Polls until a CONNECT gets `want` (a new list is swapped in just after it is logged).
fn eventually(proxy: SocketAddr, target: &str, want: u16) {
    let deadline = Instant::now() + WAIT;
    loop {
        let got = connect_status(proxy, target);
        if got == want {
            return;
        }
        assert!(Instant::now() < deadline, "{target}: {got}, expected {want}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The first version loads; then the server streams 2 GB. The download stops at the size
/// limit, the old list keeps blocking, and the process's peak memory stays small (the body
/// goes to a file, never into memory).
fn a_2gb_list_is_cut_off_and_the_old_one_kept() -> Outcome {
    let dir = tempfile::tempdir().unwrap();
    let script: Arc<Script> = Arc::new(|n, s| match n {
        0 => small_list(s, "evil.test\n", "\"v1\""),
        _ => endless(s, 2 << 30),
    });
    let (url, count) = list_server(script);
    let cfg = config(dir.path(), &url, "max_download_bytes = 33554432\n");
    let mut proxy = run(&cfg, &dir.path().join("data"));
    proxy.wait_for("list updated");
    // Under Wine a process starts far larger (Wine's own DLLs, mapped whole): there
    // the bound is on the growth from the start.
    let start_mib = if cfg!(windows) { support::rss_kib(proxy.child.id()) / 1024 } else { 0 };
    eventually(proxy.addr, "evil.test:443", 403);
    let line = proxy.wait_for("list update failed");
    assert!(line.contains("limit"), "{line}");
    assert!(count.load(Ordering::SeqCst) >= 2);
    assert_eq!(connect_status(proxy.addr, "evil.test:443"), 403, "the previous version is kept");
    assert_eq!(connect_status(proxy.addr, &echo_server().to_string()), 200, "and the proxy serves");
    let peak_mib = support::peak_rss_kib(proxy.child.id()) / 1024;
    eprintln!("peak RSS during a 2 GB download cut at 32 MiB: {peak_mib} MiB (started at {start_mib} MiB)");
    assert!(peak_mib - start_mib < 64, "peak RSS {peak_mib} MiB");
    proxy.signal("-TERM");
    assert_eq!(proxy.wait_exit().code(), Some(0));
    passed()
}

fn serve_list() -> String {
    let script: Arc<Script> = Arc::new(|_, s| small_list(s, "evil.test\n", "\"v1\""));
    list_server(script).0
}

/// The data directory's list cache cannot be created (a file is in the way): the list still
/// loads and blocks, and the log says why it is not cached.
fn an_unwritable_data_dir_still_blocks_and_says_why() -> Outcome {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("lists"), "not a directory").unwrap();
    serves_uncached(dir.path(), &data, &["list.txt"]);
    passed()
}

/// Mounts a tiny tmpfs (with `options`) on `dir`, unmounted when dropped; when not root,
/// the skip for the test to return.
struct Tmpfs<'a>(&'a Path);

impl<'a> Tmpfs<'a> {
    fn mount(dir: &'a Path, options: &str) -> Result<Tmpfs<'a>, Outcome> {
        std::fs::create_dir_all(dir).unwrap();
        if cfg!(windows) {
            return Err(platform_limit(
                "Wine 8: no tmpfs to mount from Windows, and the tests run as root, for whom Wine cannot make a \
                 directory unwritable (it does not enforce file DACLs; the read-only attribute is a Unix mode \
                 bit that root ignores)",
            ));
        }
        let ok = Command::new("mount").args(["-t", "tmpfs", "-o", options, "tmpfs"]).arg(dir).status();
        if ok.is_ok_and(|s| s.success()) {
            return Ok(Tmpfs(dir));
        }
        #[cfg(unix)]
        // SAFETY: geteuid has no preconditions.
        assert_ne!(unsafe { libc::geteuid() }, 0, "running as root, yet a tmpfs could not be mounted");
        Err(skip("mounting a tmpfs to fill or freeze the disk needs root"))
    }
}

impl Drop for Tmpfs<'_> {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.0).status();
    }
}

/// Starts with the data directory as given, and checks the proxy blocks with the downloaded
/// list, serves, says why the list is not cached (`why` in the log line), and stops cleanly.
fn serves_uncached(dir: &Path, data: &Path, why: &[&str]) {
    let cfg = config(dir, &serve_list(), "");
    let mut proxy = run(&cfg, data);
    proxy.wait_for("list updated");
    let line = proxy.wait_for("downloading it uncached");
    assert!(why.iter().any(|w| line.contains(w)), "{line}");
    eventually(proxy.addr, "evil.test:443", 403);
    assert_eq!(connect_status(proxy.addr, &echo_server().to_string()), 200);
    proxy.signal("-TERM");
    assert_eq!(proxy.wait_exit().code(), Some(0));
}

/// A full disk (a tiny tmpfs filled to the last byte) under the data directory: the proxy
/// starts, blocks with the downloaded list, and says it cannot cache it.
fn a_full_disk_keeps_the_proxy_serving() -> Outcome {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let _tmpfs = match Tmpfs::mount(&data, "size=64k") {
        Ok(mounted) => mounted,
        Err(skipped) => return skipped,
    };
    let mut filler = std::fs::File::create(data.join("filler")).unwrap();
    let block = vec![0u8; 4096];
    while filler.write_all(&block).and_then(|_| filler.sync_all()).is_ok() {}
    serves_uncached(dir.path(), &data, &["No space left on device", "os error 28"]);
    passed()
}

/// A read-only data directory (even for root): the same.
fn a_read_only_data_dir_keeps_the_proxy_serving() -> Outcome {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let _tmpfs = match Tmpfs::mount(&data, "size=64k,ro") {
        Ok(mounted) => mounted,
        Err(skipped) => return skipped,
    };
    serves_uncached(dir.path(), &data, &["Read-only file system", "os error 30"]);
    passed()
}

/// SIGKILL at many points while a list downloads and is saved; every next start, with the
/// list server refusing, either serves a complete cached copy or none, never a broken one.
fn sigkill_during_a_list_save_leaves_a_good_next_start() -> Outcome {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let offline = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let off = offline.clone();
    // A big list (about 6 MiB, 8,193 names) sent in pieces, so kills land in the download and the save.
    let script: Arc<Script> = Arc::new(move |_, s| {
        if off.load(Ordering::SeqCst) {
            return write!(s, "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
        let chunk: String = (0..8192).map(|i| format!("0.0.0.0 n{i:07}.test\n")).collect();
        let pieces = 32;
        write!(s, "HTTP/1.1 200 OK\r\nETag: \"big\"\r\nContent-Length: {}\r\n\r\n", 20 + chunk.len() * pieces)?;
        s.write_all(b"0.0.0.0 evil.test\n\n\n")?;
        for _ in 0..pieces {
            s.write_all(chunk.as_bytes())?;
        }
        Ok(())
    });
    let (url, _) = list_server(script);
    let cfg = config(dir.path(), &url, "");
    let mut complete = 0;
    // Kills at fixed moments land wherever this machine happens to be (in the download, in
    // the save, or after): each must leave a complete list or none. The last kill waits
    // until the list was saved ("list updated" is logged after the save), whatever the
    // machine's speed, and must find it.
    let kills: [Option<u64>; 9] =
        [Some(0), Some(50), Some(150), Some(300), Some(500), Some(700), Some(900), Some(1200), None];
    for kill_after in kills {
        offline.store(false, Ordering::SeqCst);
        let mut proxy = run(&cfg, &data);
        match kill_after {
            Some(ms) => std::thread::sleep(Duration::from_millis(ms)),
            None => {
                proxy.wait_for("list updated");
            }
        }
        proxy.child.kill().unwrap();
        proxy.child.wait().unwrap();
        offline.store(true, Ordering::SeqCst);
        let mut next = run(&cfg, &data);
        let loaded = next.wait_for("lists loaded");
        let status = connect_status(next.addr, "evil.test:443");
        if status == 403 {
            complete += 1;
            assert!(loaded.contains("names=8193"), "a partial list was served: {loaded}");
        } else {
            assert!(kill_after.is_some(), "killed after the save, the next start has no list: {loaded}");
            assert_eq!(status, 502, "after a kill at {kill_after:?} ms");
            assert!(loaded.contains("names=0"), "{loaded}");
        }
        next.signal("-TERM");
        assert_eq!(next.wait_exit().code(), Some(0));
    }
    eprintln!("{complete} of {} kills left a complete cache; none left a broken one", kills.len());
    assert!(complete >= 1, "the kill after the save should find the list saved");
    passed()
}
