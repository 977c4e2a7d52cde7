#!/usr/bin/env python3
"""Screenshots of the desktop app in each of its states, at 960x700 and 800x600, for the docs
and for review: the real app under Xvfb in a throwaway HOME (its own session bus and GNOME
settings), driven through its window with WebDriver (tauri-driver + WebKitWebDriver) and by
the real `guardnest` command through the app's control API; and the tray's icons.

  docs/tools/app-states.py OUTDIR [APP [GUARDNEST]]

Defaults: target/debug/guardnest-app and target/debug/guardnest. Needs tauri-driver
(~/.cargo/bin), WebKitWebDriver, xvfb-run, dbus-run-session, gsettings, ImageMagick and
Python's GObject bindings (python3-gi: the tray host the session runs, as the desktop tests'
app/src-tauri/tests/support/tray_host.py; one state is taken without it).
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
XWINDOW = os.path.join(ROOT, "bench", "tools", "xwindow.py")
sys.path.insert(0, os.path.join(ROOT, "bench", "tools"))
import tray  # noqa: E402 (bench/tools/tray.py, found through the path above)


SIZES = [(960, 700), (800, 600)]
LOCAL = ('[proxy]\nlisten = "127.0.0.1:0"\n[control]\nlisten = "127.0.0.1:0"\n[system_proxy]\nbackend = "gnome"\n'
         '[blocklist]\nsources = SOURCES\ndefault_lists = false\n')


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def tauri_driver():
    found = shutil.which("tauri-driver")
    return found or os.path.expanduser("~/.cargo/bin/tauri-driver")


class Home:
    """A throwaway HOME with GuardNest's data dir, a local list and a config."""

    def __init__(self, sources='["HOME/block.hosts"]'):
        self.path = tempfile.mkdtemp(prefix="guardnest-states-")
        self.data = os.path.join(self.path, "data", "guardnest")
        os.makedirs(self.data)
        os.makedirs(os.path.join(self.path, "run"), mode=0o700)
        with open(os.path.join(self.path, "block.hosts"), "w") as f:
            f.write("0.0.0.0 evil.test\n0.0.0.0 phishing.test\n0.0.0.0 tracker.test\n")
        with open(os.path.join(self.data, "config.toml"), "w") as f:
            f.write(LOCAL.replace("SOURCES", sources).replace("HOME", self.path))
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": self.path,
            "XDG_DATA_HOME": os.path.join(self.path, "data"),
            "XDG_CONFIG_HOME": os.path.join(self.path, "config"),
            "XDG_RUNTIME_DIR": os.path.join(self.path, "run"),
            "GSETTINGS_BACKEND": "dconf",
            "NO_AT_BRIDGE": "1",
            "LANG": "C.UTF-8",
        }

    def cli(self, guardnest, *args):
        return subprocess.run([guardnest, *args, "--data-dir", self.data], env=self.env, capture_output=True,
                              text=True, timeout=60)

    def remove(self):
        shutil.rmtree(self.path, ignore_errors=True)


class Window:
    """The app, started by tauri-driver in its own X server and session bus, and a WebDriver
    session on its window."""

    def __init__(self, app, home, with_tray=True):
        self.home = home
        port, native = free_port(), free_port()
        # A desktop that shows tray icons (a StatusNotifierWatcher on the bus), or not.
        host = tray.command() if with_tray else []
        self.driver = subprocess.Popen(
            ["dbus-run-session", "--", *host, "xvfb-run", "-a", "-s", "-screen 0 1024x768x24",
             tauri_driver(), "--port", str(port), "--native-port", str(native)],
            env=home.env, stdout=self.log(), stderr=subprocess.STDOUT, start_new_session=True)
        self.base = f"http://127.0.0.1:{port}"
        caps = {"capabilities": {"alwaysMatch": {"browserName": "wry", "tauri:options": {"application": app}}}}
        deadline = time.monotonic() + 60
        while True:
            try:
                self.session = self.http("POST", "/session", caps)["value"]["sessionId"]
                break
            except Exception:
                if time.monotonic() > deadline:
                    self.close()
                    raise SystemExit("no WebDriver session")
                time.sleep(0.3)
        self.pid = self.app_pid()

    def log(self):
        """Where the driver and the app write (kept when something fails)."""
        self.log_path = os.path.join(tempfile.gettempdir(), f"app-states-{os.getpid()}-{free_port()}.log")
        return open(self.log_path, "w")

    def http(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers={"content-type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as r:
            return json.loads(r.read())

    def cmd(self, method, path, body=None):
        v = self.http(method, f"/session/{self.session}{path}", body)["value"]
        if isinstance(v, dict) and "error" in v:
            raise RuntimeError(f"{method} {path}: {v}")
        return v

    def find(self, css):
        v = self.cmd("POST", "/element", {"using": "css selector", "value": css})
        return next(iter(v.values()))

    def click(self, css):
        self.cmd("POST", f"/element/{self.find(css)}/click", {})

    def type(self, css, text):
        if not text.isascii():
            # WebKitWebDriver's key events for non-ASCII text can crash it: set the value as
            # a paste would.
            self.script("const e = document.querySelector(arguments[0]); e.value = arguments[1]; "
                        "e.dispatchEvent(new Event('input'));", css, text)
            return
        el = self.find(css)
        self.cmd("POST", f"/element/{el}/clear", {})
        self.cmd("POST", f"/element/{el}/value", {"text": text})

    def script(self, js, *args):
        return self.cmd("POST", "/execute/sync", {"script": js, "args": list(args)})

    def text(self, css):
        return self.cmd("GET", f"/element/{self.find(css)}/text")

    def wait(self, what, ok, limit=30):
        deadline = time.monotonic() + limit
        while True:
            try:
                if ok():
                    return
            except Exception:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"never happened: {what}")
            time.sleep(0.2)

    def wait_text(self, css, ok, limit=30):
        self.wait(f"{css} text", lambda: ok(self.text(css)), limit)

    def size(self, w, h):
        self.cmd("POST", "/window/rect", {"width": w, "height": h})
        self.wait(f"a {w}x{h} window", lambda: self.script("return [innerWidth, innerHeight]") == [w, h], 10)

    def shot(self, path):
        """The window as the X server shows it (ImageMagick's import; the window is at the
        top left, there is no window manager). WebKitWebDriver's own screenshot waits for a
        frame that a page which does not change never gives."""
        time.sleep(0.4)  # the last redraw (the chart, a transition) settles
        w, h = self.script("return [innerWidth, innerHeight]")
        subprocess.run(["import", "-window", "root", "-crop", f"{w}x{h}+0+0", "+repage", path], env=self.xenv(),
                       check=True)
        print(f"wrote {path}")

    def both(self, out, name, before=None):
        """The current state at both sizes (`before` runs after each resize: a scroll)."""
        for w, h in SIZES:
            self.size(w, h)
            if before:
                before()
            self.shot(os.path.join(out, f"{name}-{w}x{h}.png"))
        self.size(*SIZES[0])

    def scroll_to(self, css):
        self.script(f"document.querySelector({json.dumps(css)}).scrollIntoView({{block: 'start'}}); "
                    "window.scrollBy(0, -12)")

    def top(self):
        self.script("window.scrollTo(0, 0)")

    def app_pid(self):
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            out = subprocess.run(["pgrep", "-s", str(os.getpgid(self.driver.pid)), "-x", "guardnest-app"],
                                 capture_output=True, text=True).stdout.split()
            if out:
                return int(out[0])
            time.sleep(0.1)
        return None

    def xenv(self):
        with open(f"/proc/{self.pid}/environ", "rb") as f:
            env = dict(kv.split(b"=", 1) for kv in f.read().split(b"\0") if b"=" in kv)
        return {**self.home.env, **{k.decode(): v.decode() for k, v in env.items()
                                    if k in (b"DISPLAY", b"XAUTHORITY", b"DBUS_SESSION_BUS_ADDRESS")}}

    def close_window(self):
        subprocess.run([sys.executable, XWINDOW, "close", "GuardNest"], env=self.xenv(), check=True)

    def close(self):
        try:
            self.http("DELETE", f"/session/{self.session}")
        except Exception:
            pass
        try:
            os.killpg(self.driver.pid, signal.SIGTERM)
            self.driver.wait(timeout=15)
        except (subprocess.TimeoutExpired, ProcessLookupError):
            os.killpg(self.driver.pid, signal.SIGKILL)


def connect(addr, target):
    host, port = addr.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
        return s.recv(64)


def not_found_server():
    """A list server that answers 404 to everything."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)

    def serve():
        while True:
            try:
                c, _ = srv.accept()
            except OSError:
                return
            c.recv(4096)
            c.sendall(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
            c.close()
    threading.Thread(target=serve, daemon=True).start()
    return srv


def protected_and_the_window(out, app, guardnest):
    home = Home()
    w = Window(app, home)
    try:
        w.wait_text("#state-title", lambda t: t == "You are protected")
        addr = json.loads(home.cli(guardnest, "status", "--json").stdout)["listen"]
        for target in ["www.evil.test:443"] * 3 + ["phishing.test:443", "tracker.test:443"]:
            connect(addr, target)
        w.wait_text("#recent", lambda t: "tracker.test" in t)
        # Allowed from the window: the row says so, with Undo.
        w.click('#recent li[data-host="phishing.test"] button.allow')
        w.wait_text('#recent li[data-host="phishing.test"]', lambda t: "Undo" in t)
        w.both(out, "protected")
        w.both(out, "recently-blocked", lambda: w.scroll_to("#recent"))
        # Who asked: the programs that went through GuardNest (here, this script's Python).
        w.wait_text("#programs", lambda t: "python" in t)
        w.both(out, "protected-programs", lambda: w.scroll_to("#programs-card"))
        # Check a site: a pasted URL, an IDN, a long input.
        w.type("#check-name", "https://www.evil.test/some/path?x=1")
        w.click("#check-form button")
        w.wait_text("#check-result", lambda t: "blocked" in t)
        w.both(out, "check-url", lambda: w.scroll_to("#check-form"))
        w.type("#check-name", "bücher.example")
        w.click("#check-form button")
        w.wait_text("#check-result", lambda t: "xn--" in t)
        w.both(out, "check-idn", lambda: w.scroll_to("#check-form"))
        w.type("#check-name", "x" * 2000)
        w.click("#check-form button")
        w.wait_text("#check-result", lambda t: "too long for a site name" in t)
        w.both(out, "check-long", lambda: w.scroll_to("#check-form"))
        # Lists: a URL answering 404 is refused; the user's allowlist shows its names.
        srv = not_found_server()
        w.type("#add-url", f"http://127.0.0.1:{srv.getsockname()[1]}/blocklist.txt")
        w.click("#add-form button")
        w.wait_text("#lists-msg", lambda t: "404" in t)
        w.script("document.getElementById('allowed-names').open = true")
        w.both(out, "lists", lambda: w.scroll_to("#lists-card"))
        srv.close()
        # Paused from the window, then the amber switch resumes.
        w.top()
        w.click("#pause")
        w.wait_text("#state-title", lambda t: t == "Protection is paused")
        w.both(out, "paused")
        w.click(".switch .slider")
        w.wait_text("#state-title", lambda t: t == "You are protected")
        # Off from the CLI: the window follows.
        home.cli(guardnest, "disable")
        w.wait_text("#state-title", lambda t: t == "Protection is off")
        w.both(out, "off")
        home.cli(guardnest, "enable")
        w.wait_text("#state-title", lambda t: t == "You are protected")
        # The first close says GuardNest keeps running in the tray.
        w.close_window()
        w.wait("the close notice", lambda: w.script("return !document.getElementById('closing').classList.contains('hidden')"))
        w.both(out, "closing")
    finally:
        w.close()
        home.remove()


def one_state(out, app, name, title, home, before=None, ready=None):
    w = Window(app, home)
    try:
        if title:
            w.wait_text("#state-title", lambda t: t == title)
        if ready:
            w.wait(name, lambda: ready(w))
        if before:
            before(w)
        w.both(out, name)
    finally:
        w.close()
        home.remove()


def main():
    out = sys.argv[1]
    app = sys.argv[2] if len(sys.argv) > 2 else os.path.join(ROOT, "target/debug/guardnest-app")
    guardnest = sys.argv[3] if len(sys.argv) > 3 else os.path.join(ROOT, "target/debug/guardnest")
    os.makedirs(out, exist_ok=True)
    gone = f"http://127.0.0.1:{free_port()}/malware.txt"

    protected_and_the_window(out, app, guardnest)

    # A desktop that shows no tray icons: the first close says the window is minimised instead.
    home = Home()
    w = Window(app, home, with_tray=False)
    try:
        w.wait_text("#state-title", lambda t: t == "You are protected")
        w.close_window()
        w.wait("the no-tray close notice", lambda: "no tray icons" in w.text("#closing"))
        w.both(out, "closing-no-tray")
    finally:
        w.close()
        home.remove()

    # Only a list that cannot be downloaded: not protected, and which list and why.
    one_state(out, app, "not-protected", "Not protected yet", Home(f'["{gone}"]'),
              ready=lambda w: "Not downloaded yet" in w.text("#warn-text"))
    # A local list loaded, a downloaded one missing: partly protected, and which.
    one_state(out, app, "partly-protected", "Partly protected", Home(f'["HOME/block.hosts", "{gone}"]'),
              ready=lambda w: "malware.txt" in w.text("#warn-text"))

    # A taken port at start: why, and another port to choose.
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    home = Home()
    with open(os.path.join(home.data, "config.toml")) as f:
        config = f.read().replace('listen = "127.0.0.1:0"', f'listen = "127.0.0.1:{taken.getsockname()[1]}"', 1)
    with open(os.path.join(home.data, "config.toml"), "w") as f:
        f.write(config)
    one_state(out, app, "port-taken", "Protection is off", home, ready=lambda w: "port" in w.text("#error-text"))
    taken.close()

    # What a repair at login put back, told at the next start.
    home = Home()
    with open(os.path.join(home.data, "repaired.json"), "w") as f:
        json.dump({"at": int(time.time()) - 3600, "message": "restored your gnome proxy settings",
                   "at_login": True, "backend": "gnome"}, f)
    one_state(out, app, "repaired", "You are protected", home,
              ready=lambda w: "logged in" in w.text("#repaired-text"))

    # The CLI holds the data dir: the window names it; when it stops, it says so.
    home = Home()
    run = subprocess.Popen([guardnest, "run", "--data-dir", home.data, "--listen", "127.0.0.1:0", "--control",
                            "127.0.0.1:0", "--no-default-lists"], env=home.env, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not os.path.exists(os.path.join(home.data, "control.json")) and time.monotonic() < deadline:
            time.sleep(0.1)
        w = Window(app, home)
        try:
            w.wait_text("#refused-title", lambda t: t == "GuardNest is already running")
            w.both(out, "already-running")
            run.terminate()
            run.wait(timeout=15)
            w.wait_text("#refused-title", lambda t: t == "The other GuardNest has stopped")
            w.both(out, "already-running-stopped")
        finally:
            w.close()
    finally:
        if run.poll() is None:
            run.terminate()
            run.wait(timeout=15)
        home.remove()

    # The tray's icons, one per state, as the tray item offers them.
    icons = os.path.join(ROOT, "app", "src-tauri", "icons", "tray")
    subprocess.run(["/usr/bin/convert", *(os.path.join(icons, f"{n}.png") for n in ["on", "paused", "off", "unprotected"]),
                    "-background", "#3c4043", "-alpha", "remove", "-bordercolor", "#3c4043", "-border", "8",
                    "+append", os.path.join(out, "tray-icons.png")], check=True)
    print(f"wrote {os.path.join(out, 'tray-icons.png')}")


if __name__ == "__main__":
    main()
