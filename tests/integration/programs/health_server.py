"""An HTTP server for health check tests: answers 200 on every path while the file named by
argv[2] does not exist, 500 while it does. Listens on 127.0.0.1:argv[1]."""

import http.server
import os
import sys

FLAG = sys.argv[2]


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(500 if os.path.exists(FLAG) else 200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
