#!/usr/bin/env python3
"""Mock calico-node web view server, for working on the page without a cluster.

Usage: ``python3 mock_server.py [--host 127.0.0.1] [--port 8099] [--live] [--delay SECONDS]
[--index PATH]`` (``--port 0`` picks a free port). Prints ``serving on http://HOST:PORT/``
once listening.

Routes (query strings accepted on all):

  /                 crates/node/src/ui/index.html, or --index PATH (read on each request)
  /api/cluster      api/cluster, as is
  /api/flows        api/flows, as is (``since`` is accepted and ignored); with --live the
                    allowed flows' counters grow on each request, to watch the live refresh
  /api/why?id=ID    {"flow": the flow with that id from api/flows, "decidedBy": its
                    decidedBy.text, "trace" and "agrees" from api/why.json}; 404 if unknown.
                    --delay (default 0.3 s) holds the answer back, to see "loading…".

``python3 -m http.server`` in this folder also serves api/cluster and api/flows (it drops
query strings), but neither the page nor api/why.

Python 3 standard library only.
"""

import argparse
import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

HERE = Path(__file__).resolve().parent
INDEX = HERE.parents[3] / "node" / "src" / "ui" / "index.html"


class Handler(BaseHTTPRequestHandler):
    index = INDEX
    live = False
    delay = 0.3
    started = time.monotonic()

    def send(self, status, body, ctype="application/json"):
        data = body.encode() if isinstance(body, str) else body
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        if url.path in ("/", "/index.html"):
            self.send(200, self.index.read_bytes(), "text/html; charset=utf-8")
        elif url.path == "/api/cluster":
            self.send(200, (HERE / "api" / "cluster").read_bytes())
        elif url.path == "/api/flows":
            data = json.loads((HERE / "api" / "flows").read_text())
            if self.live:
                ticks = int((time.monotonic() - self.started) / 2)
                for flow in data["flows"]:
                    if flow["action"] == "allow":
                        flow["packets"] += ticks * 3
                        flow["bytes"] += ticks * 1500
            self.send(200, json.dumps(data))
        elif url.path == "/api/why":
            time.sleep(self.delay)
            wanted = query.get("id", [None])[0]
            flows = json.loads((HERE / "api" / "flows").read_text())["flows"]
            why = json.loads((HERE / "api" / "why.json").read_text())
            flow = next((f for f in flows if f["id"] == wanted), None)
            if flow is None or wanted not in why:
                self.send(404, f"no flow with id {wanted!r}", "text/plain; charset=utf-8")
                return
            answer = {"flow": flow, "decidedBy": flow["decidedBy"]["text"],
                      "trace": why[wanted]["trace"], "agrees": why[wanted]["agrees"]}
            self.send(200, json.dumps(answer))
        else:
            self.send(404, "not found", "text/plain; charset=utf-8")

    def log_message(self, fmt, *args):
        sys.stderr.write("mock: " + (fmt % args) + "\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8099)
    parser.add_argument("--live", action="store_true")
    parser.add_argument("--delay", type=float, default=0.3)
    parser.add_argument("--index", type=Path, default=INDEX)
    args = parser.parse_args()
    Handler.live = args.live
    Handler.delay = args.delay
    Handler.index = args.index
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    host, port = server.server_address[:2]
    print(f"serving on http://{host}:{port}/", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
