//! What the test suites need from the system, and getting it: Debian packages with
//! `apt-get` (as root, or through `sudo -n`), and `tauri-driver` with `cargo install`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// One requirement: how to tell it is met, the packages that meet it, and who needs it.
struct Need {
    present: fn() -> bool,
    packages: &'static [&'static str],
    for_what: &'static str,
}

const NEEDS: &[Need] = &[
    Need {
        present: || run_ok("pkg-config", &["--exists", "webkit2gtk-4.1"]),
        packages: &[
            "pkg-config",
            "build-essential",
            "libwebkit2gtk-4.1-dev",
            "libxdo-dev",
            "libssl-dev",
            "libayatana-appindicator3-dev",
            "librsvg2-dev",
        ],
        for_what: "building the desktop app (WebKitGTK)",
    },
    Need {
        present: || on_path("xvfb-run") && on_path("xauth"),
        packages: &["xvfb", "xauth"],
        for_what: "the app's real-window tests",
    },
    Need {
        present: || Path::new("/usr/bin/convert").is_file() && on_path("import"),
        packages: &["imagemagick"],
        for_what: "the window test's screenshot",
    },
    Need {
        present: || on_path("WebKitWebDriver"),
        packages: &["webkit2gtk-driver"],
        for_what: "the app's WebDriver test",
    },
    Need {
        present: || {
            on_path("gsettings")
                && Path::new("/usr/share/glib-2.0/schemas/org.gnome.system.proxy.gschema.xml").is_file()
        },
        packages: &["libglib2.0-bin", "gsettings-desktop-schemas"],
        for_what: "the GNOME system-proxy tests",
    },
    Need {
        present: || on_path("dbus-run-session") && on_path("dbus-launch"),
        packages: &["dbus", "dbus-x11"],
        for_what: "throwaway desktop sessions",
    },
    Need {
        present: || Path::new("/usr/libexec/dconf-service").is_file() && on_path("dconf"),
        packages: &["dconf-service", "dconf-gsettings-backend", "dconf-cli"],
        for_what: "the GNOME system-proxy tests",
    },
    Need {
        present: || on_path("kwriteconfig5"),
        packages: &["libkf5config-bin"],
        for_what: "the KDE system-proxy tests",
    },
    Need { present: || on_path("haproxy"), packages: &["haproxy"], for_what: "the gateway test behind HAProxy" },
    Need {
        present: || Path::new("/usr/sbin/squid").is_file() && Path::new("/usr/lib/squid/basic_ncsa_auth").is_file(),
        packages: &["squid", "openssl"],
        for_what: "the parent-proxy tests (Squid as GuardNest's upstream)",
    },
    Need {
        present: || on_path("ip") && on_path("sysctl") && on_path("unshare") && on_path("mount"),
        packages: &["iproute2", "procps", "util-linux", "mount"],
        for_what: "the gateway's own-address tests (network namespaces)",
    },
    Need {
        present: || on_path("curl") && on_path("wget"),
        packages: &["curl", "wget"],
        for_what: "the real-clients test",
    },
    Need {
        present: || run_ok("python3", &["-c", "import requests"]),
        packages: &["python3", "python3-requests"],
        for_what: "the real-clients test",
    },
    Need {
        present: || on_path("desktop-file-validate"),
        packages: &["desktop-file-utils"],
        for_what: "the login-entry tests (desktop-file-validate reads the entries)",
    },
    Need {
        present: || {
            ["python3", "/usr/bin/python3"]
                .iter()
                .any(|p| run_ok(p, &["-c", "import gi; gi.require_version('Gio', '2.0')"]))
        },
        packages: &["python3-gi", "gir1.2-glib-2.0"],
        for_what: "the login-entry tests (GLib reads the entries) and the desktop tests' tray host",
    },
    Need {
        present: || on_path("openbox"),
        packages: &["openbox"],
        for_what: "the no-tray window test (a window manager to minimise to)",
    },
    Need {
        present: || on_path("chromium") && on_path("chromedriver"),
        packages: &["chromium", "chromium-driver"],
        for_what: "the real-browser test",
    },
];

/// Installs what is missing when it can; returns what is still missing, with why, for the
/// summary (those tests then report themselves as skipped).
pub fn ensure(install: bool) -> Vec<String> {
    let missing: Vec<&Need> = NEEDS.iter().filter(|n| !(n.present)()).collect();
    if missing.is_empty() {
        println!("system packages: everything the tests need is installed");
    } else {
        let mut packages: Vec<&str> = missing.iter().flat_map(|n| n.packages.iter().copied()).collect();
        packages.dedup();
        println!("system packages missing: {}", packages.join(" "));
        for n in &missing {
            println!("    {} ({})", n.packages.join(" "), n.for_what);
        }
        match apt_prefix() {
            Some(prefix) if install => apt_install(&prefix, &packages),
            Some(_) => println!("not installing (--no-install)"),
            None => println!(
                "cannot install them (not root, and `sudo -n` is not allowed); as root run:\n    \
                 apt-get install --no-install-recommends {}",
                packages.join(" ")
            ),
        }
    }
    if install && tauri_driver().is_none() {
        println!("installing tauri-driver 2.1.0 (for the app's WebDriver test): cargo install tauri-driver --locked");
        let ok = Command::new("cargo")
            .args(["install", "tauri-driver", "--locked", "--version", "2.1.0"])
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            println!("could not install tauri-driver; the WebDriver test will say so");
        }
    }
    NEEDS
        .iter()
        .filter(|n| !(n.present)())
        .map(|n| format!("{} (missing: {})", n.for_what, n.packages.join(" ")))
        .collect()
}

/// Whether the desktop app can be built here (its WebKitGTK development files).
pub fn can_build_app() -> bool {
    (NEEDS[0].present)()
}

/// `apt-get` as root directly, or through passwordless sudo; `None` when neither works.
fn apt_prefix() -> Option<Vec<&'static str>> {
    if !on_path("apt-get") {
        return None;
    }
    let root = Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.trim_ascii() == b"0");
    if root {
        return Some(vec![]);
    }
    run_ok("sudo", &["-n", "true"]).then(|| vec!["sudo", "-n"])
}

fn apt_install(prefix: &[&str], packages: &[&str]) {
    println!("installing with apt-get: {}", packages.join(" "));
    let apt = |args: &[&str]| {
        let mut argv: Vec<&str> = prefix.to_vec();
        argv.push("apt-get");
        argv.extend_from_slice(args);
        Command::new(argv[0])
            .args(&argv[1..])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !apt(&["update", "-qq"]) {
        println!("apt-get update failed; trying the install anyway");
    }
    let mut args = vec!["install", "-y", "-qq", "--no-install-recommends"];
    args.extend_from_slice(packages);
    if !apt(&args) {
        println!("apt-get install failed; the tests that need these packages will say so");
    }
}

/// Where tauri-driver is: on PATH or in cargo's bin directory.
pub fn tauri_driver() -> Option<PathBuf> {
    which("tauri-driver").or_else(|| {
        let home = std::env::var_os("CARGO_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))?;
        let p = home.join("bin/tauri-driver");
        p.is_file().then_some(p)
    })
}

fn which(program: &str) -> Option<PathBuf> {
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths).map(|d| d.join(program)).find(|p| p.is_file())
}

fn on_path(program: &str) -> bool {
    which(program).is_some()
}

fn run_ok(program: &str, args: &[&str]) -> bool {
    Command::new(program).args(args).stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
}
