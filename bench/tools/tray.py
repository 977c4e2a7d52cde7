"""The desktop tests' tray host, for the scripts that start the app in a throwaway session
(bench/app-at-rest.py, docs/tools/app-states.py): where it is, and a Python that can run it."""
import os
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# A StatusNotifierWatcher with a host registered: a desktop that shows tray icons.
SCRIPT = os.path.join(ROOT, "app", "src-tauri", "tests", "support", "tray_host.py")


def python_with_gi():
    """A Python that can load Gio (the tray host's), looked for as the tests look for it."""
    for python in ["python3", "/usr/bin/python3"]:
        probe = subprocess.run([python, "-c", "import gi; gi.require_version('Gio', '2.0'); from gi.repository import Gio"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if probe.returncode == 0:
            return python
    raise SystemExit("the tray host needs Python's GObject bindings: apt-get install python3-gi gir1.2-glib-2.0")


def command():
    """The tray host's command line, to put in front of the session's own command."""
    return [python_with_gi(), SCRIPT]
