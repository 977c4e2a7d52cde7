//! `cargo xtask check`: the one-minute loop for a change to the engine. Formatting, clippy
//! with every warning an error, and the core's suites (the connection path, the service,
//! the lists, the module graph and the docs' names), on what is already installed: nothing
//! is installed, no Wine, no desktop. `cargo xtask test` remains the whole run.

use std::process::{Command, ExitCode};
use std::time::Instant;

/// Runs the steps in order, stopping at the first that fails; prints each step's time.
pub fn check() -> ExitCode {
    let started = Instant::now();
    let app = crate::packages::can_build_app();
    let mut clippy: Vec<&str> = vec!["clippy", "--workspace", "--all-targets", "--quiet"];
    if !app {
        clippy.extend(["--exclude", "guardnest-app"]);
    }
    clippy.extend(["--", "-D", "warnings"]);
    let steps: [(&str, Vec<&str>); 4] = [
        ("formatting", vec!["fmt", "--all", "--check"]),
        ("clippy -D warnings", clippy),
        ("the OS layer's unit tests", vec!["test", "--quiet", "-p", "guardnest-sysproxy", "--lib"]),
        ("the core: connection path, service, lists, module graph", vec!["test", "--quiet", "-p", "guardnest-core"]),
    ];
    for (what, args) in steps {
        let t = Instant::now();
        println!("\n== check: {what}: cargo {}", args.join(" "));
        let ok = Command::new("cargo").args(&args).status().is_ok_and(|s| s.success());
        println!("   ({:.0} s)", t.elapsed().as_secs_f64());
        if !ok {
            println!("CHECK FAILED: {what} ({:.0} s in all)", started.elapsed().as_secs_f64());
            return ExitCode::FAILURE;
        }
    }
    if !app {
        println!("(the desktop app was left out of clippy: its WebKitGTK files are not installed)");
    }
    println!(
        "check ok ({:.0} s); the whole run, every suite and Windows: cargo xtask test",
        started.elapsed().as_secs_f64()
    );
    ExitCode::SUCCESS
}
