#!/usr/bin/env python3
"""The user's own proxy, for the installer test (.ci/windows/installer.sh): an HTTP proxy
on loopback that answers every request itself (it stands in for a corporate proxy, and
nothing leaves the machine) and records each one, so the test can show that a Windows
program's traffic went through it.

    user-proxy.py PORT_FILE LOG_FILE

Binds 127.0.0.1 on a free port, writes the port to PORT_FILE, then appends one line per
request to LOG_FILE ("GET http://www.evil.test/") and answers 200 with the body
"served by the user's own proxy: GET http://www.evil.test/". CONNECT is refused (405):
the test uses plain http:// URLs through this proxy.
"""

import http.server
import os
import sys


class Handler(http.server.BaseHTTPRequestHandler):
    def _serve(self):
        line = f"{self.command} {self.path}"
        with open(sys.argv[2], "a", encoding="utf-8") as log:
            log.write(line + "\n")
        if self.command == "CONNECT":
            self.send_error(405, "this test proxy serves plain HTTP only")
            return
        body = f"served by the user's own proxy: {line}\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_HEAD = do_POST = do_CONNECT = _serve

    def log_message(self, *args):
        pass


def main():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    with open(sys.argv[1] + ".tmp", "w", encoding="utf-8") as f:
        f.write(f"{server.server_address[1]}\n")
    os.replace(sys.argv[1] + ".tmp", sys.argv[1])
    server.serve_forever()


if __name__ == "__main__":
    main()
