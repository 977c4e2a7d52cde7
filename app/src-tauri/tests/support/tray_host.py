#!/usr/bin/env python3
"""A tray host for the desktop tests: org.kde.StatusNotifierWatcher on the session bus, with
a host registered, as KDE's, GNOME's AppIndicator extension and XFCE's panel provide. The app
looks for it to know whether its tray icon can be seen at all (without one, closing the
window minimises it). Runs COMMAND once it owns the name, and exits with COMMAND's status.

    tray_host.py COMMAND [ARGS...]
"""

import sys

import gi

gi.require_version("Gio", "2.0")
from gi.repository import Gio, GLib  # noqa: E402

NAME = "org.kde.StatusNotifierWatcher"
XML = """<node><interface name="org.kde.StatusNotifierWatcher">
  <method name="RegisterStatusNotifierItem"><arg type="s" direction="in"/></method>
  <method name="RegisterStatusNotifierHost"><arg type="s" direction="in"/></method>
  <property name="RegisteredStatusNotifierItems" type="as" access="read"/>
  <property name="IsStatusNotifierHostRegistered" type="b" access="read"/>
  <property name="ProtocolVersion" type="i" access="read"/>
  <signal name="StatusNotifierItemRegistered"><arg type="s"/></signal>
  <signal name="StatusNotifierItemUnregistered"><arg type="s"/></signal>
  <signal name="StatusNotifierHostRegistered"/>
</interface></node>"""

items = []
status = {"code": 1}
loop = GLib.MainLoop()


def method_call(conn, sender, path, interface, method, params, invocation):
    if method == "RegisterStatusNotifierItem":
        (service,) = params.unpack()
        # An item names its bus name or its object path (then the caller's name is meant).
        item = sender + service if service.startswith("/") else service
        if item not in items:
            items.append(item)
        conn.emit_signal(None, path, interface, "StatusNotifierItemRegistered", GLib.Variant("(s)", (item,)))
    invocation.return_value(None)


def get_property(conn, sender, path, interface, prop):
    return {
        "RegisteredStatusNotifierItems": GLib.Variant("as", items),
        "IsStatusNotifierHostRegistered": GLib.Variant("b", True),
        "ProtocolVersion": GLib.Variant("i", 0),
    }[prop]


def child_exited(child, result):
    try:
        child.wait_finish(result)
        status["code"] = child.get_exit_status() if child.get_if_exited() else 1
    finally:
        loop.quit()


def acquired(conn, name):
    child = Gio.Subprocess.new(sys.argv[1:], Gio.SubprocessFlags.NONE)
    child.wait_async(None, child_exited)


def lost(conn, name):
    print("tray_host.py: cannot own " + NAME, file=sys.stderr)
    loop.quit()


def main():
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    bus = Gio.bus_get_sync(Gio.BusType.SESSION, None)
    node = Gio.DBusNodeInfo.new_for_xml(XML)
    bus.register_object("/StatusNotifierWatcher", node.interfaces[0], method_call, get_property, None)
    Gio.bus_own_name_on_connection(bus, NAME, Gio.BusNameOwnerFlags.NONE, acquired, lost)
    loop.run()
    return status["code"]


if __name__ == "__main__":
    sys.exit(main())
