//! The tray, read back as a tray host reads it: the app's StatusNotifierItem and its
//! com.canonical.dbusmenu menu on a private session bus (dbus-run-session, Xvfb), through
//! gdbus. Its title is the product's, its icon a drawn PNG per state, "Protection on" is
//! ticked only while GuardNest blocks, and the menu follows the engine whoever changes it.
//! Needs xvfb-run, dbus-run-session, gdbus and ImageMagick; skipped without them unless
//! GUARDNEST_REQUIRE_DESKTOP_TESTS=1.

mod support;

use guardnest_testkit::{passed, Outcome};

guardnest_testkit::main!(
    the_tray_is_titled_guardnest_and_draws_and_ticks_only_what_is_true,
    the_tray_of_an_app_refused_by_another_guardnest_has_no_tick,
    running_with_no_list_loaded_the_tray_says_on_but_blocking_nothing_and_opens_the_window,
);

use std::process::Stdio;
use std::time::{Duration, Instant};

use support::{AppProcess, DesktopHome, Tray};

fn missing_tools() -> Option<Outcome> {
    guardnest_testkit::needs_tools(
        &["xvfb-run", "dbus-run-session", "gdbus", "convert"],
        "apt-get install xvfb xauth dbus libglib2.0-bin imagemagick",
    )
}

/// The app in a session of its own (Xvfb and a private session bus), in `home`.
fn start(home: &DesktopHome) -> std::process::Child {
    home.desktop(true)
        .arg(env!("CARGO_BIN_EXE_guardnest-app"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// The shield's colour in the icon: green (blocking), amber (paused), grey (off), red (not
/// protected). `srgba(31,111,74,1)` and the like. None while the icon is being replaced (the
/// item names a new file for each state).
fn hue(tray: &Tray) -> Option<&'static str> {
    let colour = tray.icon_colour();
    if colour.is_empty() {
        return None;
    }
    let rgb: Vec<u32> = colour
        .trim_start_matches("srgba(")
        .trim_start_matches("srgb(")
        .trim_end_matches(')')
        .split(',')
        .take(3)
        .filter_map(|c| c.trim().parse().ok())
        .collect();
    Some(match rgb[..] {
        [r, g, b] if g > r + 40 && g > b + 20 => "green",
        [r, g, b] if r > 150 && g > 90 && b < 60 => "amber",
        [r, g, b] if r > g + 80 && r > b + 80 => "red",
        [r, g, b] if r.abs_diff(g) < 20 && g.abs_diff(b) < 20 => "grey",
        _ => panic!("an icon of no state's colour: {colour}"),
    })
}

/// Waits until the icon is `want`'s colour (the tray follows the engine within a second).
fn wait_hue(tray: &Tray, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while hue(tray) != Some(want) {
        assert!(
            Instant::now() < deadline,
            "the tray's icon never turned {want}: {:?} {:?}",
            tray.icon_file(),
            hue(tray)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn ticked(menu: &[support::TrayItem], label: &str) -> Option<bool> {
    menu.iter().find(|i| i.label == label).and_then(|i| i.ticked)
}

fn the_tray_is_titled_guardnest_and_draws_and_ticks_only_what_is_true() -> Outcome {
    if let Some(skipped) = missing_tools() {
        return skipped;
    }
    let home = DesktopHome::new();
    let mut child = start(&home);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let app = AppProcess::of(&home);
        let tray = app.tray();
        assert_eq!(tray.property("Title"), "GuardNest");
        // Blocking: ticked, green, and the first line says it.
        let menu = tray.wait("protection on", |m| ticked(m, "Protection on") == Some(true));
        assert_eq!(menu[0].label, "Protected");
        wait_hue(&tray, "green");
        // Real pixel data: a 64x64 PNG with a drawn shield, where the item says it is.
        let icon = tray.icon_file();
        assert!(icon.starts_with(tray.property("IconThemePath")), "{icon:?}");
        let out = std::process::Command::new("/usr/bin/convert")
            .arg(&icon)
            .args(["-format", "%wx%h %k", "info:"])
            .output()
            .unwrap();
        let info = String::from_utf8_lossy(&out.stdout).into_owned();
        let (size, colours) = info.split_once(' ').unwrap();
        assert_eq!(size, "64x64", "{icon:?}");
        assert!(colours.trim().parse::<u32>().unwrap() > 10, "a blank icon: {info}");

        // Off from the tray: the proxy stops, the tick goes, the icon turns grey.
        tray.click("Protection on");
        let menu = tray.wait("protection off", |m| m[0].label == "Protection is off");
        assert_eq!(ticked(&menu, "Protection on"), Some(false));
        wait_hue(&tray, "grey");
        let cli = |args: &[&str]| {
            let out = std::process::Command::new(support::guardnest_cli())
                .args(args)
                .arg("--data-dir")
                .arg(home.data_dir())
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        assert!(cli(&["status"]).contains("\noff"), "the tray's Off did not stop protection");
        // On again, then paused by the CLI: no tick while paused, amber, and Resume.
        tray.click("Protection on");
        tray.wait("protection on again", |m| ticked(m, "Protection on") == Some(true));
        cli(&["pause"]);
        let menu = tray.wait("paused", |m| m[0].label.starts_with("Paused until "));
        assert_eq!(ticked(&menu, "Protection on"), Some(false), "ticked while paused");
        wait_hue(&tray, "amber");
        // "Protection on" during a pause means blocking again.
        tray.click("Protection on");
        tray.wait("blocking after On during a pause", |m| {
            ticked(m, "Protection on") == Some(true) && m[0].label == "Protected"
        });
        assert!(cli(&["status"]).contains("\nprotected"), "still paused after Protection on");
        // Paused from the tray, resumed from the tray.
        tray.click("Pause for 15 minutes");
        tray.wait("paused from the tray", |m| m.iter().any(|i| i.label == "Resume protection"));
        tray.click("Resume protection");
        tray.wait("resumed from the tray", |m| m[0].label == "Protected");
        wait_hue(&tray, "green");
        // A pause that runs out: the tray stops saying "paused" within a second of its end.
        let (code, _) = support::control(&home.data_dir(), "POST", "/v1/pause?seconds=2");
        assert_eq!(code, 200);
        let (_, status) = support::control(&home.data_dir(), "GET", "/v1/status");
        let until = std::time::UNIX_EPOCH + Duration::from_secs(status["paused_until"].as_u64().unwrap());
        tray.wait("paused by the control API", |m| m[0].label.starts_with("Paused until "));
        let left = until.duration_since(std::time::SystemTime::now()).unwrap_or_default();
        let deadline = Instant::now() + left + Duration::from_secs(1);
        while tray.menu()[0].label != "Protected" {
            assert!(Instant::now() < deadline, "the tray still said paused a second after the pause ended");
            std::thread::sleep(Duration::from_millis(50));
        }
    }));
    support::kill_group(&mut child);
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
    passed()
}

/// With another GuardNest holding the data dir the app runs nothing: "Protection on" is
/// not ticked, cannot be ticked, and the first line says why.
fn the_tray_of_an_app_refused_by_another_guardnest_has_no_tick() -> Outcome {
    if let Some(skipped) = missing_tools() {
        return skipped;
    }
    let home = DesktopHome::new();
    let mut run = home
        .command(support::guardnest_cli().to_str().unwrap())
        .args(["run", "--listen", "127.0.0.1:0", "--control", "127.0.0.1:0", "--no-default-lists"])
        .arg("--data-dir")
        .arg(home.data_dir())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !home.data_dir().join("control.json").exists() {
        assert!(Instant::now() < deadline, "guardnest run did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut child = start(&home);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let app = AppProcess::in_group(child.id());
        let tray = app.tray();
        let menu = tray.wait("the refused state", |m| m[0].label == "Another GuardNest is running");
        let toggle = menu.iter().find(|i| i.label == "Protection on").unwrap();
        assert_eq!((toggle.ticked, toggle.enabled), (Some(false), false), "{menu:?}");
        assert!(!menu.iter().find(|i| i.label.starts_with("Pause")).unwrap().enabled);
        wait_hue(&tray, "grey");
        // A click (a host may send one to a disabled item) starts nothing and leaves no tick.
        tray.click("Protection on");
        tray.wait("no tick after a click", |m| ticked(m, "Protection on") == Some(false));
        assert!(app.alive());
        // The other GuardNest stops: the tray says so, as the window does.
        support::kill_group(&mut run);
        tray.wait("the holder gone", |m| m[0].label == "The other GuardNest has stopped: open GuardNest to start");
    }));
    support::kill_group(&mut child);
    support::kill_group(&mut run);
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
    passed()
}

/// Running with no list loaded (the only list cannot be downloaded: first start offline),
/// GuardNest is neither on nor off as a person means it. The tray says "Not protected", its
/// switch reads "On, but blocking nothing yet: see why" with no tick, and a click opens the
/// window (closed to the tray before), which says why; nothing is switched.
fn running_with_no_list_loaded_the_tray_says_on_but_blocking_nothing_and_opens_the_window() -> Outcome {
    if let Some(skipped) = missing_tools() {
        return skipped;
    }
    let home = DesktopHome::new().told_about_tray();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let config = home.data_dir().join("config.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    let start_of_sources = text.find("sources = [").unwrap();
    let end_of_sources = start_of_sources + text[start_of_sources..].find(']').unwrap() + 1;
    let only_unreachable = format!("sources = [\"http://{closed}/never.txt\"]");
    std::fs::write(&config, format!("{}{only_unreachable}{}", &text[..start_of_sources], &text[end_of_sources..]))
        .unwrap();
    let mut child = start(&home);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let app = AppProcess::of(&home);
        let tray = app.tray();
        let switch = "On, but blocking nothing yet: see why";
        let menu = tray.wait("not protected", |m| m[0].label == "Not protected: no list loaded");
        let toggle = menu.iter().find(|i| i.label == switch).unwrap_or_else(|| panic!("no {switch:?}: {menu:?}"));
        assert_eq!((toggle.ticked, toggle.enabled), (Some(false), true), "{menu:?}");
        assert!(!menu.iter().any(|i| i.label == "Protection on"), "{menu:?}");
        wait_hue(&tray, "red");
        // Closed to the tray (told once already: at once), then the switch: the window comes
        // back, the state unchanged and still no tick.
        app.xwindow(&["wait", "GuardNest", "60"]);
        app.xwindow(&["close", "GuardNest"]);
        let deadline = Instant::now() + Duration::from_secs(20);
        while app.web_processes() > 0 {
            assert!(Instant::now() < deadline, "the window did not close");
            std::thread::sleep(Duration::from_millis(100));
        }
        tray.click(switch);
        app.xwindow(&["wait", "GuardNest", "20"]);
        let menu = tray.wait("no tick after the click", |m| ticked(m, switch) == Some(false));
        assert_eq!(menu[0].label, "Not protected: no list loaded");
        assert!(app.alive());
    }));
    support::kill_group(&mut child);
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
    passed()
}
