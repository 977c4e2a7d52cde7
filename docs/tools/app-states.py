#!/usr/bin/env python3
"""Screenshots of the desktop app in each of its states, for the docs and for review: the
real app under Xvfb in a throwaway HOME, driven by the real `guardnest` command through the
app's control API.

  docs/tools/app-states.py OUTDIR [APP [GUARDNEST]]

States: protected (with blocks), not protected (offline), paused, off, a taken port at
start, and another GuardNest holding the data directory. Defaults: target/debug/guardnest-app
and target/debug/guardnest. Needs xvfb-run, dbus-run-session and ImageMagick's `import`.
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
XWINDOW = os.path.join(ROOT, "bench", "tools", "xwindow.py")


class Session:
    """The app in its own X server and session bus, with a throwaway HOME."""

    def __init__(self, app, config, home=None):
        self.home = home or tempfile.mkdtemp(prefix="guardnest-states-")
        self.data = os.path.join(self.home, "data", "guardnest")
        os.makedirs(self.data, exist_ok=True)
        os.makedirs(os.path.join(self.home, "run"), mode=0o700, exist_ok=True)
        with open(os.path.join(self.home, "block.hosts"), "w") as f:
            f.write("0.0.0.0 evil.test\n0.0.0.0 phishing.test\n")
        with open(os.path.join(self.data, "config.toml"), "w") as f:
            f.write(config.replace("HOME", self.home))
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": self.home,
            "XDG_DATA_HOME": os.path.join(self.home, "data"),
            "XDG_CONFIG_HOME": os.path.join(self.home, "config"),
            "XDG_RUNTIME_DIR": os.path.join(self.home, "run"),
            "NO_AT_BRIDGE": "1",
        }
        self.pidfile = os.path.join(self.home, "pid")
        self.proc = subprocess.Popen(
            ["dbus-run-session", "--", "xvfb-run", "-a", "-s", "-screen 0 1024x768x24",
             "sh", "-c", f'"{app}" & echo $! > "{self.pidfile}"; wait'],
            env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 60
        while not (os.path.exists(self.pidfile) and open(self.pidfile).read().strip()):
            if time.monotonic() > deadline:
                raise SystemExit("the app did not start")
            time.sleep(0.1)
        pid = int(open(self.pidfile).read())
        with open(f"/proc/{pid}/environ", "rb") as f:
            env = dict(kv.split(b"=", 1) for kv in f.read().split(b"\0") if b"=" in kv)
        self.xenv = {**self.env, **{k.decode(): v.decode() for k, v in env.items()
                                    if k in (b"DISPLAY", b"XAUTHORITY", b"DBUS_SESSION_BUS_ADDRESS")}}
        subprocess.run([sys.executable, XWINDOW, "wait", "GuardNest", "60"], env=self.xenv, check=True,
                       stdout=subprocess.DEVNULL)
        time.sleep(2)

    def cli(self, guardnest, *args):
        return subprocess.run([guardnest, *args, "--data-dir", self.data], env=self.env, capture_output=True, text=True)

    def listen(self, guardnest):
        out = self.cli(guardnest, "status", "--json")
        return json.loads(out.stdout)["listen"] if out.returncode == 0 else None

    def shot(self, path):
        time.sleep(1.5)  # the window redraws on the change
        subprocess.run(["import", "-window", "root", path], env=self.xenv, check=True)
        print(f"wrote {path}")

    def close(self):
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
        shutil.rmtree(self.home, ignore_errors=True)


def connect(addr, target):
    host, port = addr.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
        return s.recv(64)


def main():
    out = sys.argv[1]
    app = sys.argv[2] if len(sys.argv) > 2 else os.path.join(ROOT, "target/debug/guardnest-app")
    guardnest = sys.argv[3] if len(sys.argv) > 3 else os.path.join(ROOT, "target/debug/guardnest")
    os.makedirs(out, exist_ok=True)
    local = ('[proxy]\nlisten = "127.0.0.1:0"\n[control]\nlisten = "127.0.0.1:0"\n[system_proxy]\nbackend = "none"\n'
             '[blocklist]\nsources = ["HOME/block.hosts"]\ndefault_lists = false\n')

    s = Session(app, local)
    try:
        addr = s.listen(guardnest)
        for target in ["www.evil.test:443"] * 3 + ["phishing.test:443"]:
            connect(addr, target)
        s.shot(os.path.join(out, "1-protected.png"))
        s.cli(guardnest, "pause", "15")
        s.shot(os.path.join(out, "3-paused.png"))
        s.cli(guardnest, "resume")
        s.cli(guardnest, "disable")
        s.shot(os.path.join(out, "4-off.png"))
        # Another GuardNest on the same data dir is refused, naming this one.
        second = subprocess.run([guardnest, "run", "--data-dir", s.data], env=s.env, capture_output=True, text=True,
                                timeout=30)
        print(f"a second `guardnest run` on the app's data dir: exit {second.returncode}: {second.stderr.strip()}")
    finally:
        s.close()

    gone = socket.socket()
    gone.bind(("127.0.0.1", 0))
    port = gone.getsockname()[1]
    gone.close()
    s = Session(app, local.replace('sources = ["HOME/block.hosts"]', f'sources = ["http://127.0.0.1:{port}/list.txt"]'))
    try:
        time.sleep(3)  # the first download fails
        s.shot(os.path.join(out, "2-not-protected-offline.png"))
    finally:
        s.close()

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    s = Session(app, local.replace('listen = "127.0.0.1:0"', f'listen = "127.0.0.1:{taken.getsockname()[1]}"', 1))
    try:
        s.shot(os.path.join(out, "5-port-taken.png"))
    finally:
        s.close()
        taken.close()

    # The CLI holds the data dir: the app says so and offers nothing else.
    home = tempfile.mkdtemp(prefix="guardnest-states-")
    data = os.path.join(home, "data", "guardnest")
    os.makedirs(data)
    run = subprocess.Popen([guardnest, "run", "--data-dir", data, "--listen", "127.0.0.1:0", "--control", "127.0.0.1:0",
                            "--no-default-lists"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(2)
        s = Session(app, local, home=home)
        try:
            s.shot(os.path.join(out, "6-already-running.png"))
        finally:
            s.close()
    finally:
        run.terminate()
        run.wait(timeout=15)


main()
