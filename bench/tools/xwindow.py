#!/usr/bin/env python3
"""Find, close and watch a top-level X11 window by its title, as a window manager would
close it (WM_DELETE_WINDOW), with nothing but libX11 through ctypes.

  xwindow.py shown TITLE      exit 0 if a window titled TITLE is mapped, else 1
  xwindow.py close TITLE      ask it to close (the app sees a close request, as from its title bar)
  xwindow.py wait TITLE SECS  wait until it is mapped; print how long that took in ms
"""
import ctypes
import ctypes.util
import sys
import time

x = ctypes.cdll.LoadLibrary(ctypes.util.find_library("X11") or "libX11.so.6")
Window = ctypes.c_ulong
Atom = ctypes.c_ulong
x.XOpenDisplay.restype = ctypes.c_void_p
x.XOpenDisplay.argtypes = [ctypes.c_char_p]
x.XDefaultRootWindow.restype = Window
x.XDefaultRootWindow.argtypes = [ctypes.c_void_p]
x.XQueryTree.argtypes = [ctypes.c_void_p, Window, ctypes.POINTER(Window), ctypes.POINTER(Window),
                         ctypes.POINTER(ctypes.POINTER(Window)), ctypes.POINTER(ctypes.c_uint)]
x.XFetchName.argtypes = [ctypes.c_void_p, Window, ctypes.POINTER(ctypes.c_char_p)]
x.XInternAtom.restype = Atom
x.XInternAtom.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
x.XFree.argtypes = [ctypes.c_void_p]
x.XFlush.argtypes = [ctypes.c_void_p]
x.XSendEvent.argtypes = [ctypes.c_void_p, Window, ctypes.c_int, ctypes.c_long, ctypes.c_void_p]


class XWindowAttributes(ctypes.Structure):
    _fields_ = [("x", ctypes.c_int), ("y", ctypes.c_int), ("width", ctypes.c_int), ("height", ctypes.c_int),
                ("border_width", ctypes.c_int), ("depth", ctypes.c_int), ("visual", ctypes.c_void_p),
                ("root", Window), ("c_class", ctypes.c_int), ("bit_gravity", ctypes.c_int),
                ("win_gravity", ctypes.c_int), ("backing_store", ctypes.c_int),
                ("backing_planes", ctypes.c_ulong), ("backing_pixel", ctypes.c_ulong),
                ("save_under", ctypes.c_int), ("colormap", ctypes.c_ulong), ("map_installed", ctypes.c_int),
                ("map_state", ctypes.c_int), ("all_event_masks", ctypes.c_long),
                ("your_event_mask", ctypes.c_long), ("do_not_propagate_mask", ctypes.c_long),
                ("override_redirect", ctypes.c_int), ("screen", ctypes.c_void_p)]


x.XGetWindowAttributes.argtypes = [ctypes.c_void_p, Window, ctypes.POINTER(XWindowAttributes)]


class XClientMessageEvent(ctypes.Structure):
    _fields_ = [("type", ctypes.c_int), ("serial", ctypes.c_ulong), ("send_event", ctypes.c_int),
                ("display", ctypes.c_void_p), ("window", Window), ("message_type", Atom),
                ("format", ctypes.c_int), ("l", ctypes.c_long * 5)]


class XEvent(ctypes.Union):
    _fields_ = [("xclient", XClientMessageEvent), ("pad", ctypes.c_long * 24)]


def windows(d, w):
    root, parent, children, n = Window(), Window(), ctypes.POINTER(Window)(), ctypes.c_uint()
    if not x.XQueryTree(d, w, ctypes.byref(root), ctypes.byref(parent), ctypes.byref(children), ctypes.byref(n)):
        return
    kids = [children[i] for i in range(n.value)]
    if children:
        x.XFree(children)
    for k in kids:
        yield k
        yield from windows(d, k)


def find(d, title):
    for w in windows(d, x.XDefaultRootWindow(d)):
        name = ctypes.c_char_p()
        if x.XFetchName(d, w, ctypes.byref(name)) and name.value:
            found = name.value.decode(errors="replace")
            x.XFree(name)
            if found == title:
                attrs = XWindowAttributes()
                x.XGetWindowAttributes(d, w, ctypes.byref(attrs))
                if attrs.map_state == 2:  # IsViewable
                    return w
    return None


def main():
    cmd, title = sys.argv[1], sys.argv[2]
    d = x.XOpenDisplay(None)
    if not d:
        sys.exit("xwindow.py: cannot open the display")
    if cmd == "shown":
        sys.exit(0 if find(d, title) else 1)
    if cmd == "wait":
        start, limit = time.monotonic(), float(sys.argv[3])
        while time.monotonic() - start < limit:
            if find(d, title):
                print(int((time.monotonic() - start) * 1000))
                return
            time.sleep(0.01)
        sys.exit(f"xwindow.py: no window {title!r} within {limit} s")
    if cmd == "close":
        w = find(d, title)
        if not w:
            sys.exit(f"xwindow.py: no window {title!r}")
        ev = XEvent()
        ev.xclient.type = 33  # ClientMessage
        ev.xclient.window = w
        ev.xclient.message_type = x.XInternAtom(d, b"WM_PROTOCOLS", 0)
        ev.xclient.format = 32
        ev.xclient.l[0] = x.XInternAtom(d, b"WM_DELETE_WINDOW", 0)
        ev.xclient.l[1] = 0  # CurrentTime
        x.XSendEvent(d, w, 0, 0, ctypes.byref(ev))
        x.XFlush(d)
        return
    sys.exit(__doc__)


main()
