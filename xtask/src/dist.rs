//! `cargo xtask dist`: the release files, made offline on Linux, in one folder.
//!
//! Into `target/dist/` (or `--out DIR`):
//! - `GuardNest-<version>-x64-setup.exe`: the Windows setup program, made by Debian's
//!   `makensis` from `packaging/windows/guardnest.nsi` with `guardnest.exe` and
//!   `guardnest-app.exe` built for `x86_64-pc-windows-gnu`;
//! - `guardnest-<version>-x86_64-windows.exe`: the CLI for Windows, alone;
//! - `guardnest-<version>-x86_64-linux`: the CLI for Linux;
//! - the desktop app's `.deb`, made by the Tauri bundler (as `app/test-deb.sh` makes it);
//! - `SHA256SUMS`: one `sha256sum` line per file above.
//!
//! `--windows-setup-only` makes only the setup program (and its sum). `--profile dev` packs
//! debug builds instead of release ones: what CI installs under Wine, where the Windows
//! release builds would add about 22 minutes on 2 cores (BENCHMARKS.md).

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{bail, Context, Result};

pub const USAGE: &str =
    "usage: cargo xtask dist [--windows-setup-only] [--profile release|dev] [--version V] [--out DIR]

  --windows-setup-only  make only the Windows setup program
  --profile PROFILE     the cargo profile to pack (default release; dev, with --windows-setup-only,
                        packs debug builds, for CI)
  --version V           the version the setup program shows (default: the workspace's)
  --out DIR             where the files go (default target/dist)";

/// The Windows target every Windows file is built for (MinGW: cross-compiles from Linux).
const WINDOWS: &str = "x86_64-pc-windows-gnu";
/// The Tauri bundler that makes the .deb (the version app/test-deb.sh uses).
const TAURI_CLI: &str = "@tauri-apps/cli@2.12.5";
/// DLLs every supported Windows (10 and 11, 64-bit) has: with [`BUNDLED_DLLS`], the only
/// ones the .exe files may import (checked on each build).
const SYSTEM_DLLS: &[&str] = &[
    "advapi32.dll",
    "bcrypt.dll",
    "bcryptprimitives.dll",
    "combase.dll",
    "comctl32.dll",
    "crypt32.dll",
    "dwmapi.dll",
    "gdi32.dll",
    "gdiplus.dll",
    "imm32.dll",
    "iphlpapi.dll",
    "kernel32.dll",
    "ktmw32.dll",
    "msvcrt.dll",
    "ncrypt.dll",
    "netapi32.dll",
    "ntdll.dll",
    "ole32.dll",
    "oleaut32.dll",
    "propsys.dll",
    "rasapi32.dll",
    "rpcrt4.dll",
    "secur32.dll",
    "shell32.dll",
    "shlwapi.dll",
    "user32.dll",
    "userenv.dll",
    "uxtheme.dll",
    "version.dll",
    "winhttp.dll",
    "wininet.dll",
    "winmm.dll",
    "ws2_32.dll",
    "wtsapi32.dll",
];

/// DLLs the setup program carries beside the .exe files (packaging/windows/guardnest.nsi):
/// Microsoft's WebView2 loader, which the MinGW build of the app links dynamically (the MSVC
/// build links it statically) and which cargo copies beside guardnest-app.exe.
const BUNDLED_DLLS: &[&str] = &["webview2loader.dll"];

struct Options {
    windows_setup_only: bool,
    profile: String,
    version: Option<String>,
    out: Option<PathBuf>,
}

/// Runs `cargo xtask dist ARGS` from the workspace root.
pub fn main(root: &Path, args: &[String]) -> ExitCode {
    let options = match parse(args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match dist(root, &options) {
        Ok(files) => {
            println!("\n== dist: done");
            for f in files {
                println!("    {}", f.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("dist FAILED: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn parse(args: &[String]) -> Result<Options, String> {
    let mut o = Options { windows_setup_only: false, profile: "release".into(), version: None, out: None };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().cloned().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--windows-setup-only" => o.windows_setup_only = true,
            "--profile" => o.profile = value("--profile")?,
            "--version" => o.version = Some(value("--version")?),
            "--out" => o.out = Some(PathBuf::from(value("--out")?)),
            other => return Err(format!("unknown option {other}")),
        }
    }
    if !matches!(o.profile.as_str(), "release" | "dev") {
        return Err(format!("--profile {}: release or dev", o.profile));
    }
    // The .deb always carries the release CLI (tauri.conf.json builds it first): debug
    // builds are for CI's setup program only.
    if o.profile == "dev" && !o.windows_setup_only {
        return Err("--profile dev goes with --windows-setup-only".into());
    }
    Ok(o)
}

fn dist(root: &Path, o: &Options) -> Result<Vec<PathBuf>> {
    let version = match &o.version {
        Some(v) => v.clone(),
        None => workspace_version(root)?,
    };
    let out = o.out.clone().unwrap_or_else(|| root.join("target/dist"));
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let out = out.canonicalize().with_context(|| format!("cannot resolve {}", out.display()))?;
    println!("== dist: GuardNest {version} ({} builds) into {}", o.profile, out.display());

    let mut files = Vec::new();
    let bin = stage_windows(root, &windows_binaries(root, &o.profile)?, &o.profile)?;
    // LZMA packs a release build best; a debug build (CI, several times larger) is packed
    // with zlib, several times faster to make (BENCHMARKS.md, "The Windows setup program").
    let compressor = if o.profile == "dev" { "zlib" } else { "/SOLID lzma" };
    files.push(setup_program(root, &bin, &version, compressor, &out)?);
    if !o.windows_setup_only {
        let exe = out.join(format!("guardnest-{version}-x86_64-windows.exe"));
        copy(&bin.join("guardnest.exe"), &exe)?;
        files.push(exe);

        step("the CLI for Linux");
        cargo(root, &["build", "--locked", "--profile", &o.profile, "-p", "guardnest-cli", "--bin", "guardnest"])?;
        let linux = out.join(format!("guardnest-{version}-x86_64-linux"));
        // Shipped without DWARF, as the Windows files are (the unstripped build stays in target/).
        strip_debug("strip", &root.join("target").join(profile_dir(&o.profile)).join("guardnest"), &linux)?;
        files.push(linux);

        files.push(deb(root, &version, &out)?);
    }
    sha256sums(&out, &files)?;
    files.push(out.join("SHA256SUMS"));
    Ok(files)
}

/// The workspace's version (`[workspace.package] version` in Cargo.toml).
fn workspace_version(root: &Path) -> Result<String> {
    let path = root.join("Cargo.toml");
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut in_package = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            in_package = line == "[workspace.package]";
        } else if let Some(v) = line.strip_prefix("version").filter(|_| in_package) {
            if let Some(v) = v.trim().strip_prefix('=') {
                return Ok(v.trim().trim_matches('"').to_string());
            }
        }
    }
    bail!("no [workspace.package] version in {}", path.display())
}

/// Builds guardnest.exe and guardnest-app.exe for Windows; the folder holding them.
fn windows_binaries(root: &Path, profile: &str) -> Result<PathBuf> {
    step(&format!("guardnest.exe and guardnest-app.exe for {WINDOWS} ({profile})"));
    let common = ["build", "--locked", "--target", WINDOWS, "--profile", profile];
    cargo(root, &[&common[..], &["-p", "guardnest-cli", "--bin", "guardnest"]].concat())?;
    // What `tauri build` adds: the window's files are served from inside the .exe, not
    // from a development server. A dev build (CI) is built as `cargo test` builds it.
    let app_features: &[&str] = if profile == "release" { &["--features", "tauri/custom-protocol"] } else { &[] };
    cargo(root, &[&common[..], &["-p", "guardnest-app"], app_features].concat())?;
    let dir = root.join("target").join(WINDOWS).join(profile_dir(profile));
    for exe in ["guardnest.exe", "guardnest-app.exe"] {
        only_system_dlls(&dir.join(exe))?;
    }
    Ok(dir)
}

/// The Windows files as they are shipped: a release build's .exe files without their DWARF
/// debug information (`strip --strip-debug`: a quarter of the size; the COFF symbols stay, so
/// a backtrace still names functions; the unstripped files stay in target/ to read a crash
/// report with). A dev build (CI) is packed as built, so the test can compare the installed
/// files with the build's. The folder holding them.
fn stage_windows(root: &Path, bin: &Path, profile: &str) -> Result<PathBuf> {
    if profile == "dev" {
        return Ok(bin.to_path_buf());
    }
    let stage = root.join("target/dist-stage/windows");
    std::fs::create_dir_all(&stage).with_context(|| format!("cannot create {}", stage.display()))?;
    for exe in ["guardnest.exe", "guardnest-app.exe"] {
        strip_debug("x86_64-w64-mingw32-strip", &bin.join(exe), &stage.join(exe))?;
    }
    // The DLLs the setup carries, as cargo named them (not, say, a Wine stub put beside).
    for entry in std::fs::read_dir(bin).with_context(|| format!("cannot read {}", bin.display()))? {
        let path = entry.with_context(|| format!("cannot read {}", bin.display()))?.path();
        let name = path.file_name().map(|n| n.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
        if BUNDLED_DLLS.contains(&name.as_str()) {
            copy(&path, &stage.join(path.file_name().unwrap_or_default()))?;
        }
    }
    Ok(stage)
}

/// Copies `from` to `to` without its DWARF debug information, with `tool` (binutils' strip
/// for that target).
fn strip_debug(tool: &str, from: &Path, to: &Path) -> Result<()> {
    let status = Command::new(tool)
        .arg("--strip-debug")
        .arg("-o")
        .arg(to)
        .arg(from)
        .status()
        .with_context(|| format!("cannot run {tool} (binutils)"))?;
    if !status.success() {
        bail!("{tool} --strip-debug {} failed ({status})", from.display());
    }
    Ok(())
}

/// Fails when `exe` imports a DLL that is not part of Windows: the setup program would
/// install a program that cannot start. Read from its import table with MinGW's objdump.
fn only_system_dlls(exe: &Path) -> Result<()> {
    let out = Command::new("x86_64-w64-mingw32-objdump")
        .arg("-p")
        .arg(exe)
        .output()
        .context("cannot run x86_64-w64-mingw32-objdump (apt-get install binutils-mingw-w64-x86-64)")?;
    if !out.status.success() {
        bail!("objdump -p {}: {}", exe.display(), String::from_utf8_lossy(&out.stderr).trim());
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut dlls: Vec<String> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("DLL Name:"))
        .map(|d| d.trim().to_ascii_lowercase())
        .collect();
    dlls.sort();
    dlls.dedup();
    let foreign: Vec<&String> = dlls
        .iter()
        .filter(|d| !d.starts_with("api-ms-win-") && !SYSTEM_DLLS.contains(&d.as_str()))
        .filter(|d| !BUNDLED_DLLS.contains(&d.as_str()))
        .collect();
    if !foreign.is_empty() {
        bail!(
            "{} needs DLLs that are neither part of Windows nor in the setup program: {foreign:?}; \
             add them to packaging/windows/guardnest.nsi and BUNDLED_DLLS, or link them statically",
            exe.display()
        );
    }
    let dir = exe.parent().unwrap_or(Path::new("."));
    for dll in dlls.iter().filter(|d| BUNDLED_DLLS.contains(&d.as_str())) {
        let found = std::fs::read_dir(dir)
            .with_context(|| format!("cannot read {}", dir.display()))?
            .filter_map(Result::ok)
            .any(|e| e.file_name().to_string_lossy().eq_ignore_ascii_case(dll));
        if !found {
            bail!("{} needs {dll}, which is not beside it in {}", exe.display(), dir.display());
        }
    }
    println!("{}: imports {}", exe.display(), dlls.join(", "));
    Ok(())
}

/// `makensis` on packaging/windows/guardnest.nsi; the setup program.
fn setup_program(root: &Path, bin: &Path, version: &str, compressor: &str, out: &Path) -> Result<PathBuf> {
    step("the Windows setup program (makensis)");
    let setup = out.join(format!("GuardNest-{version}-x64-setup.exe"));
    let icon = root.join("app/src-tauri/icons/icon.ico");
    let status = Command::new("makensis")
        .arg("-V2")
        .arg(format!("-DVERSION={version}"))
        .arg(format!("-DBINDIR={}", bin.display()))
        .arg(format!("-DOUTFILE={}", setup.display()))
        .arg(format!("-DICON={}", icon.display()))
        .arg(format!("-DCOMPRESSOR={compressor}"))
        .arg(root.join("packaging/windows/guardnest.nsi"))
        .status()
        .context("cannot run makensis (apt-get install nsis)")?;
    if !status.success() {
        bail!("makensis failed ({status})");
    }
    let size = std::fs::metadata(&setup).with_context(|| format!("makensis wrote no {}", setup.display()))?.len();
    println!("{}: {:.1} MB", setup.display(), size as f64 / 1e6);
    Ok(setup)
}

/// The desktop app's .deb, by the Tauri bundler (TAURI_CLI, else installed with npm into
/// target/tauri-cli once); copied into `out`.
fn deb(root: &Path, version: &str, out: &Path) -> Result<PathBuf> {
    step("the .deb (the Tauri bundler)");
    let tauri = match std::env::var_os("TAURI_CLI") {
        Some(t) => PathBuf::from(t),
        None => {
            let prefix = root.join("target/tauri-cli");
            let tauri = prefix.join("node_modules/.bin/tauri");
            if !tauri.is_file() {
                let status = Command::new("npm")
                    .args(["install", "--no-save", "--no-audit", "--no-fund", "--prefix"])
                    .arg(&prefix)
                    .arg(TAURI_CLI)
                    .status()
                    .context("cannot run npm (apt-get install npm), or set TAURI_CLI")?;
                if !status.success() {
                    bail!("npm install {TAURI_CLI} failed ({status})");
                }
            }
            tauri
        }
    };
    let mut cmd = Command::new(&tauri);
    cmd.current_dir(root.join("app/src-tauri")).args(["build", "--bundles", "deb", "--ci"]);
    let status = cmd.status().with_context(|| format!("cannot run {}", tauri.display()))?;
    if !status.success() {
        bail!("tauri build --bundles deb failed ({status})");
    }
    let dir = root.join("target/release/bundle/deb");
    let name = std::fs::read_dir(&dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .find(|n| n.ends_with(".deb") && n.contains(&format!("_{version}_")))
        .with_context(|| format!("no .deb of version {version} in {}", dir.display()))?;
    let deb = out.join(&name);
    copy(&dir.join(&name), &deb)?;
    Ok(deb)
}

/// Writes `out/SHA256SUMS` for `files` (all in `out`), as `sha256sum` prints them, so
/// `sha256sum -c SHA256SUMS` checks a download.
fn sha256sums(out: &Path, files: &[PathBuf]) -> Result<()> {
    let names: Vec<&std::ffi::OsStr> = files.iter().filter_map(|f| f.file_name()).collect();
    let sums = Command::new("sha256sum").current_dir(out).args(&names).output().context("cannot run sha256sum")?;
    if !sums.status.success() {
        bail!("sha256sum failed: {}", String::from_utf8_lossy(&sums.stderr).trim());
    }
    let path = out.join("SHA256SUMS");
    std::fs::write(&path, &sums.stdout).with_context(|| format!("cannot write {}", path.display()))?;
    print!("{}", String::from_utf8_lossy(&sums.stdout));
    Ok(())
}

/// The folder under target/ (and target/TRIPLE/) that a cargo profile builds into.
fn profile_dir(profile: &str) -> &'static str {
    if profile == "dev" {
        "debug"
    } else {
        "release"
    }
}

fn cargo(root: &Path, args: &[&str]) -> Result<()> {
    println!("cargo {}", args.join(" "));
    let status = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .current_dir(root)
        .args(args)
        .status()
        .context("cannot run cargo")?;
    if !status.success() {
        bail!("cargo {} failed ({status})", args.join(" "));
    }
    Ok(())
}

fn copy(from: &Path, to: &Path) -> Result<()> {
    std::fs::copy(from, to).with_context(|| format!("cannot copy {} to {}", from.display(), to.display()))?;
    Ok(())
}

fn step(what: &str) {
    println!("\n== dist: {what}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options() {
        let args = |s: &str| s.split_whitespace().map(String::from).collect::<Vec<_>>();
        let o = parse(&args("--windows-setup-only --profile dev --version 0.0.9 --out /tmp/x")).unwrap();
        assert!(o.windows_setup_only);
        assert_eq!((o.profile.as_str(), o.version.as_deref()), ("dev", Some("0.0.9")));
        assert_eq!(o.out, Some(PathBuf::from("/tmp/x")));
        assert!(parse(&args("--profile fast")).is_err());
        assert!(parse(&args("--profile dev")).is_err(), "debug builds only for the setup program");
        assert!(parse(&args("--version")).is_err());
        assert!(parse(&args("--bogus")).is_err());
    }

    #[test]
    fn version_is_the_workspaces() {
        let dir = std::env::temp_dir().join(format!("xtask-dist-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("Cargo.toml"),
            "[workspace]\nmembers = []\n\n[workspace.package]\nedition = \"2021\"\nversion = \"1.2.3\"\n\n[dependencies]\nversion = \"9\"\n",
        )
        .unwrap();
        assert_eq!(workspace_version(&dir).unwrap(), "1.2.3");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
