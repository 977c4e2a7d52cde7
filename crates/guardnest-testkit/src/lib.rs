//! Test binaries whose tests may not be able to run here (a tool is missing, a data folder
//! is absent, a privilege is lacking) use this harness instead of libtest's: such a test
//! returns [`skip`], which libtest-mimic reports as `ignored (reason)` and counts among the
//! ignored, so a test that did not run never prints `ok`.
//!
//! Where nothing may be skipped (`CI=true`, or `GUARDNEST_NO_SKIP=1`), a skip is a failure
//! that names what is missing.
//!
//! ```no_run
//! use guardnest_testkit::{needs_tools, Outcome};
//!
//! fn haproxy_balances() -> Outcome {
//!     if let Some(skipped) = needs_tools(&["haproxy"], "apt-get install haproxy") {
//!         return skipped;
//!     }
//!     // ... the test ...
//!     guardnest_testkit::passed()
//! }
//!
//! guardnest_testkit::main!(haproxy_balances);
//! ```

use std::path::Path;

pub use libtest_mimic::{Completion, Failed, Trial};

/// What a test returns: `Ok(Completed)` when it ran and passed, `Ok(Ignored)` when it was
/// skipped (see [`skip`]), `Err` when it failed (a panic is a failure too).
pub type Outcome = Result<Completion, Failed>;

/// The test ran and passed.
pub fn passed() -> Outcome {
    Ok(Completion::Completed)
}

/// Whether skipping is forbidden here: in CI (`CI=true`) or with `GUARDNEST_NO_SKIP=1`.
pub fn skipping_forbidden() -> bool {
    let set = |name: &str| std::env::var(name).is_ok_and(|v| !v.is_empty() && v != "0" && v != "false");
    set("CI") || set("GUARDNEST_NO_SKIP")
}

/// Skips the test with `reason`, or fails it where skipping is forbidden.
pub fn skip(reason: impl Into<String>) -> Outcome {
    let reason = reason.into();
    if skipping_forbidden() {
        return Err(format!("would be skipped, but skipping is not allowed here (CI): {reason}").into());
    }
    Ok(Completion::ignored_with(reason))
}

/// Skips the test because the platform it runs on cannot do what it tests (for example a
/// Wine limitation, named precisely). Unlike [`skip`], this is allowed in CI: the test
/// runner lists these separately, as limits of the platform rather than of the machine.
pub fn platform_limit(reason: impl Into<String>) -> Outcome {
    Ok(Completion::ignored_with(format!("platform limit: {}", reason.into())))
}

/// Whether this Windows program runs under Wine (its ntdll exports `wine_get_version`);
/// false elsewhere. For what Wine cannot do, named with [`platform_limit`].
pub fn under_wine() -> bool {
    #[cfg(windows)]
    {
        use windows_sys::Win32::System::LibraryLoader::{GetModuleHandleW, GetProcAddress};
        let ntdll: Vec<u16> = "ntdll.dll".encode_utf16().chain([0]).collect();
        // SAFETY: a NUL-terminated module name and symbol; nothing is called.
        unsafe {
            let module = GetModuleHandleW(ntdll.as_ptr());
            !module.is_null() && GetProcAddress(module, c"wine_get_version".as_ptr().cast()).is_some()
        }
    }
    #[cfg(not(windows))]
    false
}

/// `line` split into arguments by Windows itself (CommandLineToArgvW): what a program
/// started with that command line receives, to check our own quoting against.
#[cfg(windows)]
pub fn split_by_windows(line: &str) -> Vec<String> {
    use windows_sys::Win32::UI::Shell::CommandLineToArgvW;
    let wide: Vec<u16> = line.encode_utf16().chain([0]).collect();
    let mut n = 0;
    // SAFETY: a NUL-terminated line; the returned array is LocalAlloc'ed and freed below.
    unsafe {
        let argv = CommandLineToArgvW(wide.as_ptr(), &mut n);
        assert!(!argv.is_null(), "cannot split {line:?}");
        let out = (0..n as usize)
            .map(|i| {
                let p = *argv.add(i);
                let len = (0..).take_while(|&j| *p.add(j) != 0).count();
                String::from_utf16_lossy(std::slice::from_raw_parts(p, len))
            })
            .collect();
        windows_sys::Win32::Foundation::LocalFree(argv as _);
        out
    }
}

/// Whether `program` is on PATH.
pub fn have(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|paths| std::env::split_paths(&paths).any(|d| is_program(&d.join(program))))
}

fn is_program(path: &Path) -> bool {
    path.is_file() || path.with_extension("exe").is_file()
}

/// `Some(skip)` naming the missing programs and how to install them, for the test to
/// return at once; `None` when all are there.
pub fn needs_tools(tools: &[&str], install: &str) -> Option<Outcome> {
    let missing: Vec<&str> = tools.iter().copied().filter(|t| !have(t)).collect();
    (!missing.is_empty()).then(|| skip(format!("needs {} ({install})", missing.join(", "))))
}

/// Runs the named test functions (each `fn() -> Outcome`) with libtest's command line
/// (filters, `--list`, `--test-threads`, `--include-ignored`, …) and exits with its code.
pub fn run(trials: Vec<Trial>) -> ! {
    let args = libtest_mimic::Arguments::from_args();
    libtest_mimic::run(&args, trials).exit()
}

/// A trial for a test function; its name is the function's.
pub fn trial(name: &str, test: fn() -> Outcome) -> Trial {
    Trial::ignorable_test(name, test)
}

/// `main` for a test binary with `harness = false`: `guardnest_testkit::main!(test_a, test_b);`
#[macro_export]
macro_rules! main {
    ($($test:path),+ $(,)?) => {
        fn main() {
            $crate::run(vec![$($crate::trial(stringify!($test), $test)),+])
        }
    };
}
