//! `cargo xtask test`: the project's one test command; `cargo xtask dist`: the release
//! files (see [`dist`]).
//!
//! 1. Installs the system packages the tests need when they are missing (with `apt-get`, as
//!    root or through passwordless sudo), saying what and why, and tauri-driver.
//! 2. Runs the Linux suite: `cargo test --workspace --no-fail-fast` (the desktop app is left
//!    out, and reported, when its WebKitGTK files cannot be installed).
//! 3. Runs the Windows suite under Wine (`.ci/windows.sh`), unless `--linux-only`.
//! 4. Ends with a summary: passed, failed, and every skipped test with its reason. Where
//!    nothing may be skipped (`CI=true` or `GUARDNEST_NO_SKIP=1`) a skip fails the run, except
//!    the Windows suite's named platform limits (what Wine cannot do).

mod check;
mod dist;
mod packages;
mod report;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::time::Instant;

use report::Suite;

const USAGE: &str = "usage: cargo xtask test [--no-install] [--linux-only] [-- ARGS FOR cargo test]
       cargo xtask check

  test           every suite (Linux, then Windows under Wine); installs what the tests need
  --no-install   do not install missing system packages or tauri-driver
  --linux-only   do not run the Windows suite under Wine
  check          the quick loop: fmt, clippy -D warnings, the core's suites; installs nothing

       cargo xtask dist [OPTIONS]   the release files into target/dist (cargo xtask dist --help)";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (ours, passthrough) = match args.iter().position(|a| a == "--") {
        Some(i) => (&args[..i], &args[i + 1..]),
        None => (&args[..], &[][..]),
    };
    if ours.first().map(String::as_str) == Some("check") && ours.len() == 1 {
        let root = workspace_root();
        if let Err(e) = std::env::set_current_dir(&root) {
            eprintln!("cannot enter {}: {e}", root.display());
            return ExitCode::FAILURE;
        }
        find_list_data(&root);
        return check::check();
    }
    if ours.first().map(String::as_str) == Some("dist") {
        if ours[1..].iter().any(|a| a == "--help" || a == "-h") {
            println!("{}", dist::USAGE);
            return ExitCode::SUCCESS;
        }
        return dist::main(&workspace_root(), &ours[1..]);
    }
    if ours.first().map(String::as_str) != Some("test") {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    }
    let mut install = true;
    let mut windows = true;
    for flag in &ours[1..] {
        match flag.as_str() {
            "--no-install" => install = false,
            "--linux-only" => windows = false,
            other => {
                eprintln!("unknown option {other}\n{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    let root = workspace_root();
    if let Err(e) = std::env::set_current_dir(&root) {
        eprintln!("cannot enter {}: {e}", root.display());
        return ExitCode::FAILURE;
    }
    find_list_data(&root);
    test(install, windows, passthrough)
}

/// The real public lists the list tests read live outside the repository, in
/// `shared/data/blocklists` beside it (or beside the repository a clone was made from, as
/// CI's clone in a temporary directory is). Found once here and handed to every test run,
/// the Windows one included, as GUARDNEST_LIST_DATA; a value already set is kept.
fn find_list_data(root: &Path) {
    if std::env::var_os("GUARDNEST_LIST_DATA").is_some() {
        return;
    }
    let origin = Command::new("git")
        .args(["config", "--get", "remote.origin.url"])
        .output()
        .ok()
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
        .filter(|p| p.is_absolute());
    let found = [Some(root.to_path_buf()), origin]
        .into_iter()
        .flatten()
        .flat_map(|start| start.ancestors().map(|a| a.join("shared/data/blocklists")).collect::<Vec<_>>())
        .find(|dir| dir.is_dir());
    if let Some(dir) = found {
        println!("real lists for the list tests: {}", dir.display());
        // Set before any thread is started; every test run inherits it.
        std::env::set_var("GUARDNEST_LIST_DATA", dir);
    }
}

fn test(install: bool, windows: bool, passthrough: &[String]) -> ExitCode {
    let started = Instant::now();
    step("what the tests need");
    let missing = packages::ensure(install);

    step("Linux: cargo test --workspace");
    let mut cargo_args: Vec<String> = ["test", "--workspace", "--no-fail-fast"].map(String::from).to_vec();
    let mut suite_skips = Vec::new();
    if !packages::can_build_app() {
        cargo_args.extend(["--exclude".into(), "guardnest-app".into()]);
        suite_skips.push("the desktop app's tests (WebKitGTK development files missing)".to_string());
    }
    if !passthrough.is_empty() {
        cargo_args.push("--".into());
        cargo_args.extend(passthrough.iter().cloned());
    }
    let t = Instant::now();
    let mut linux = Suite::new("Linux");
    let linux_ok = stream(Command::new("cargo").args(&cargo_args), &mut linux);
    let linux_time = t.elapsed();

    let mut wine = Suite::new("Windows under Wine");
    let mut wine_ok = true;
    let mut wine_time = None;
    if windows && Path::new(".ci/windows.sh").is_file() {
        step("Windows: the same code built for x86_64-pc-windows-gnu, run under Wine (.ci/windows.sh)");
        let t = Instant::now();
        let mut cmd = Command::new("bash");
        cmd.arg(".ci/windows.sh");
        if !install {
            cmd.env("GUARDNEST_NO_INSTALL", "1");
        }
        wine_ok = stream(&mut cmd, &mut wine);
        wine_time = Some(t.elapsed());
    } else if windows {
        suite_skips.push("the Windows suite (.ci/windows.sh is missing)".into());
    }
    suite_skips.extend(wine.suite_skip.take());

    step("summary");
    let show = |s: &Suite, time: std::time::Duration| {
        let c = s.counts();
        println!(
            "{:<20} {:>4} passed, {:>2} failed, {:>2} skipped   ({:.0} s)",
            s.name,
            c.passed,
            c.failed,
            c.ignored,
            time.as_secs_f64()
        );
    };
    show(&linux, linux_time);
    if let Some(t) = wine_time {
        show(&wine, t);
    }
    for s in [&linux, &wine] {
        for f in &s.failed {
            println!("FAILED [{}] {f}", s.name);
        }
        for b in &s.failed_binaries {
            println!("FAILED [{}] the test binary `{b}` (cargo's own words; see the log above)", s.name);
        }
        if s.unnamed() > 0 {
            println!(
                "[{}] {} outcome(s) counted by the test binaries' `test result:` lines whose own `test ...` line \
                 was broken by other output: see the log above",
                s.name,
                s.unnamed()
            );
        }
    }
    let machine_skips: Vec<(&str, &report::Skipped)> =
        [&linux, &wine].iter().flat_map(|s| s.machine_skips().map(move |k| (s.name, k))).collect();
    if !machine_skips.is_empty() || !suite_skips.is_empty() {
        println!("skipped here (install what they name, or run as root, and they run):");
        for (suite, k) in &machine_skips {
            println!("    [{suite}] {} — {}", k.test, k.reason);
        }
        for s in &suite_skips {
            println!("    {s}");
        }
    }
    let limits: Vec<&report::Skipped> = wine.platform_limits().collect();
    if !limits.is_empty() {
        println!("not run under Wine (what Wine cannot do):");
        for k in &limits {
            println!("    {} — {}", k.test, k.reason.trim_start_matches("platform limit:").trim());
        }
    }
    if !missing.is_empty() {
        println!("still missing on this machine: {}", missing.join("; "));
    }
    println!("total time {:.0} s", started.elapsed().as_secs_f64());

    let forbidden = ["CI", "GUARDNEST_NO_SKIP"]
        .iter()
        .any(|v| std::env::var(v).is_ok_and(|v| !v.is_empty() && v != "0" && v != "false"));
    let failed = !linux_ok || !wine_ok || !linux.failed.is_empty() || !wine.failed.is_empty();
    if failed {
        println!("RESULT: FAILED");
        return ExitCode::FAILURE;
    }
    if forbidden && (!machine_skips.is_empty() || !suite_skips.is_empty()) {
        println!("RESULT: FAILED: tests were skipped where nothing may be skipped (CI)");
        return ExitCode::FAILURE;
    }
    println!("RESULT: ok");
    ExitCode::SUCCESS
}

/// Runs `cmd`, printing its output as it comes and reading every line into `suite`;
/// whether it exited 0.
fn stream(cmd: &mut Command, suite: &mut Suite) -> bool {
    let mut child = match cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn() {
        Ok(c) => c,
        Err(e) => {
            println!("cannot run {cmd:?}: {e}");
            return false;
        }
    };
    let (tx, rx) = mpsc::channel::<String>();
    let readers: Vec<_> = [
        child.stdout.take().map(|o| Box::new(o) as Box<dyn std::io::Read + Send>),
        child.stderr.take().map(|e| Box::new(e) as Box<dyn std::io::Read + Send>),
    ]
    .into_iter()
    .flatten()
    .map(|pipe| {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        })
    })
    .collect();
    drop(tx);
    for line in rx {
        println!("{line}");
        suite.line(&line);
    }
    for r in readers {
        let _ = r.join();
    }
    child.wait().is_ok_and(|s| s.success())
}

fn step(what: &str) {
    println!("\n== {what}");
}

/// The workspace root: this crate's parent directory.
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}
