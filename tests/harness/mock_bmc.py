#!/usr/bin/env python3
"""A small Redfish server for what sushy-emulator cannot do, used only by the tests.

sushy-tools 2.2.0 has no SessionService, answers resets with 204 only, never demands If-Match,
and cannot be made to misbehave. This server covers exactly that, one behaviour per MODE:

  full     SessionService (POST gives X-Auth-Token + Location; DELETE ends it), resets answered
           202 with a task monitor (Retry-After: 1, then Completed), If-Match required (428
           without, 412 with a stale tag). Power changes land when the task completes.
  silent   accepts connections and never answers
  garbage  answers 200 with a body that is not JSON
  noreset  a system without a #ComputerSystem.Reset action

Usage: mock_bmc.py MODE PORT  (listens on 127.0.0.1; prints "ready" when it does).
Every request is logged to stdout as "METHOD PATH", so a test can check the session was deleted.
"""
import json
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MODE, PORT = sys.argv[1], int(sys.argv[2])
USER, PASSWORD = "admin", "s3cret-pw"
SYS = "/redfish/v1/Systems/node-b"
state = {"power": "On", "etag": 1, "tokens": set(), "tasks": {}}
lock = threading.Lock()


def log(*a):
    print(*a, flush=True)


class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def send_json(self, code, body, headers=()):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def error(self, code, msg):
        self.send_json(code, {"error": {"code": "Base.1.0.GeneralError", "message": msg}})

    def authed(self):
        if self.path.rstrip("/") in ("/redfish/v1", "/redfish"):
            return True
        if self.headers.get("X-Auth-Token") in state["tokens"]:
            return True
        self.error(401, "authentication required")
        return False

    def read_body(self):
        # Read before any answer: an unread body would be parsed as the next request on this
        # keep-alive connection (one handler instance serves all of them).
        n = int(self.headers.get("Content-Length") or 0)
        self._body = json.loads(self.rfile.read(n) or b"{}")

    def body(self):
        return self._body

    def do_GET(self):
        log("GET", self.path)
        if MODE == "garbage":
            return self.send_json(200, b"<html>this is not json")
        p = self.path.rstrip("/")
        if p == "/redfish/v1":
            root = {"@odata.id": "/redfish/v1/", "Systems": {"@odata.id": "/redfish/v1/Systems"}}
            if MODE == "full":
                root["SessionService"] = {"@odata.id": "/redfish/v1/SessionService"}
                root["Links"] = {"Sessions": {"@odata.id": "/redfish/v1/SessionService/Sessions"}}
            return self.send_json(200, root)
        if MODE == "noreset" and p == "/redfish/v1/Systems":
            return self.send_json(200, {"Members": [{"@odata.id": SYS}]})
        if not (MODE == "noreset" or self.authed()):
            return
        if p == "/redfish/v1/Systems":
            return self.send_json(200, {"Members": [{"@odata.id": SYS}]})
        if p == SYS:
            s = {"@odata.id": SYS, "Id": "node-b", "Name": "node-b", "PowerState": state["power"]}
            if MODE != "noreset":
                s["Actions"] = {"#ComputerSystem.Reset": {
                    "target": SYS + "/Actions/ComputerSystem.Reset",
                    "@Redfish.ActionInfo": SYS + "/ResetActionInfo"}}
            return self.send_json(200, s, [("ETag", '"%d"' % state["etag"])])
        if p == SYS + "/ResetActionInfo":
            return self.send_json(200, {"Parameters": [{"Name": "ResetType",
                "AllowableValues": ["On", "ForceOff", "ForceRestart"]}]})
        if p.startswith("/redfish/v1/TaskMonitors/"):
            with lock:
                t = state["tasks"][p]
                t["polls"] += 1
                if t["polls"] < 2:
                    return self.send_json(202, {"TaskState": "Running"}, [("Location", p), ("Retry-After", "1")])
                state["power"] = t["result"]
                state["etag"] += 1
            return self.send_json(200, {"TaskState": "Completed", "TaskStatus": "OK"})
        self.error(404, "no such resource " + p)

    def do_POST(self):
        log("POST", self.path)
        self.read_body()
        p = self.path.rstrip("/")
        if p == "/redfish/v1/SessionService/Sessions" and MODE == "full":
            b = self.body()
            if b.get("UserName") != USER or b.get("Password") != PASSWORD:
                return self.error(401, "invalid credentials")
            tok = "tok-%d" % len(state["tokens"])
            state["tokens"].add(tok)
            loc = "/redfish/v1/SessionService/Sessions/%s" % tok
            return self.send_json(201, {"@odata.id": loc}, [("X-Auth-Token", tok), ("Location", loc)])
        if not self.authed():
            return
        if p == SYS + "/Actions/ComputerSystem.Reset":
            tag = self.headers.get("If-Match")
            if tag is None:
                return self.error(428, "If-Match required")
            if tag != '"%d"' % state["etag"]:
                return self.error(412, "stale ETag")
            t = self.body().get("ResetType")
            result = {"ForceOff": "Off", "On": "On", "ForceRestart": "On"}.get(t)
            if result is None:
                return self.error(400, "unsupported ResetType %s" % t)
            mon = "/redfish/v1/TaskMonitors/%d" % len(state["tasks"])
            with lock:
                state["tasks"][mon] = {"polls": 0, "result": result}
            return self.send_json(202, {}, [("Location", mon), ("Retry-After", "1")])
        self.error(404, "no such action " + p)

    def do_DELETE(self):
        log("DELETE", self.path)
        tok = self.path.rstrip("/").rsplit("/", 1)[-1]
        state["tokens"].discard(tok)
        self.send_json(204, b"")


if MODE == "silent":
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", PORT))
    s.listen(16)
    log("ready")
    conns = []
    while True:
        c, _ = s.accept()
        conns.append(c)  # keep it open, say nothing
else:
    srv = ThreadingHTTPServer(("127.0.0.1", PORT), H)
    log("ready")
    srv.serve_forever()
