#!/usr/bin/env python3
"""The dashboard (GET /) in a real browser, under load.

Starts the built schedule_server on a free loopback port (a temporary data folder with the
sample data, 2 persistent workers, a small queue, slow worker runs), starts Chromium headless,
and drives it over the Chrome DevTools Protocol with the minimal WebSocket client below (the
standard library only). The page is loaded, a burst of requests is sent at the server from
threads, and the test asserts that the page's numbers follow the server's /api/queue-stats:
the stream is live, the running and waiting counts reach what the load makes them, the
processed count and the table of server errors end equal to the server's, and the console
shows no error and no exception. Chromium and the server are killed whatever happens, and the
temporary folders removed.

    dashboard_browser_test.py --server PATH --worker PATH --sample-data DIR
                              [--chromium PATH] [--load-seconds N] [--screenshot FILE]

--screenshot writes a PNG of the page (1280x900) taken under load, at the end of the load.
"""

import argparse
import base64
import http.client
import json
import math
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

POOL_SIZE = 2
QUEUE_CAPACITY = 6
WORKER_DELAY_MS = 200
CLIENTS = 12
WIDTH, HEIGHT = 1280, 900


class TestFailure(Exception):
    pass


def check(condition, message):
    if not condition:
        raise TestFailure(message)


def wait_for(condition, timeout, step=0.1):
    """Calls condition() until it returns something true or timeout seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result or time.monotonic() >= deadline:
            return result
        time.sleep(step)


# --- A minimal WebSocket client (RFC 6455): what the DevTools protocol needs ---------------


class WebSocket:
    """Text messages over one connection: the handshake, masked frames out, frames in
    (fragmented, pinged, closed)."""

    def __init__(self, url, timeout=10.0):
        parts = urllib.parse.urlsplit(url)
        self.sock = socket.create_connection((parts.hostname, parts.port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        path = parts.path + ("?" + parts.query if parts.query else "")
        self.sock.sendall(
            (
                f"GET {path} HTTP/1.1\r\nHost: {parts.hostname}:{parts.port}\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        self.buffer = b""
        while b"\r\n\r\n" not in self.buffer:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise TestFailure("DevTools closed the WebSocket handshake")
            self.buffer += chunk
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        if not head.startswith(b"HTTP/1.1 101"):
            raise TestFailure("WebSocket handshake refused: " + head.decode(errors="replace"))

    def send(self, text):
        payload = text.encode()
        header = bytes([0x81])  # FIN, text
        size = len(payload)
        if size < 126:
            header += bytes([0x80 | size])
        elif size < 65536:
            header += bytes([0x80 | 126]) + struct.pack("!H", size)
        else:
            header += bytes([0x80 | 127]) + struct.pack("!Q", size)
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(header + mask + masked)

    def _read(self, count):
        while len(self.buffer) < count:
            chunk = self.sock.recv(max(65536, count - len(self.buffer)))
            if not chunk:
                raise TestFailure("DevTools closed the WebSocket")
            self.buffer += chunk
        data, self.buffer = self.buffer[:count], self.buffer[count:]
        return data

    def _frame(self):
        first, second = self._read(2)
        size = second & 0x7F
        if size == 126:
            (size,) = struct.unpack("!H", self._read(2))
        elif size == 127:
            (size,) = struct.unpack("!Q", self._read(8))
        mask = self._read(4) if second & 0x80 else None
        payload = self._read(size)
        if mask:
            payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        return first & 0x80, first & 0x0F, payload

    def receive(self, timeout):
        """The next text message, or None if none came within timeout seconds."""
        self.sock.settimeout(timeout)
        parts = []
        try:
            while True:
                final, opcode, payload = self._frame()
                if opcode == 0x9:  # ping: answer, masked as a client must
                    mask = os.urandom(4)
                    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
                    self.sock.sendall(bytes([0x8A, 0x80 | len(payload)]) + mask + masked)
                    continue
                if opcode == 0x8:
                    raise TestFailure("DevTools closed the WebSocket")
                if opcode in (0x1, 0x0):
                    parts.append(payload)
                    if final:
                        return b"".join(parts).decode()
        except socket.timeout:
            return None

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


class DevTools:
    """Commands and events of one page target."""

    def __init__(self, url):
        self.socket = WebSocket(url)
        self.next_id = 0
        self.events = []

    def call(self, method, params=None, timeout=15.0):
        self.next_id += 1
        ident = self.next_id
        self.socket.send(json.dumps({"id": ident, "method": method, "params": params or {}}))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.socket.receive(max(0.01, deadline - time.monotonic()))
            if text is None:
                break
            message = json.loads(text)
            if message.get("id") == ident:
                if "error" in message:
                    raise TestFailure(f"{method}: {message['error']}")
                return message.get("result", {})
            if "method" in message:
                self.events.append(message)
        raise TestFailure(f"{method}: no answer within {timeout} s")

    def evaluate(self, expression):
        result = self.call(
            "Runtime.evaluate", {"expression": expression, "returnByValue": True}
        )
        if "exceptionDetails" in result:
            raise TestFailure(f"evaluate {expression!r}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def problems(self):
        """The console errors, failed loads and exceptions seen so far, as text."""
        found = []
        for event in self.events:
            method, params = event["method"], event.get("params", {})
            if method == "Runtime.exceptionThrown":
                details = params.get("exceptionDetails", {})
                found.append("exception: " + json.dumps(details)[:500])
            elif method == "Runtime.consoleAPICalled" and params.get("type") in (
                "error",
                "assert",
            ):
                found.append("console." + params["type"] + ": " + json.dumps(params.get("args"))[:500])
            elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
                entry = params["entry"]
                found.append(f"log ({entry.get('source')}): {entry.get('text')} {entry.get('url', '')}")
        return found


# --- The server and the browser -------------------------------------------------------------


def http_get(port, target, timeout=10.0):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", target)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def queue_stats(port):
    status, body = http_get(port, "/api/queue-stats")
    check(status == 200, f"/api/queue-stats answered {status}")
    return json.loads(body)


def start_server(args, scratch):
    log = open(os.path.join(scratch, "server.log"), "wb")
    env = dict(os.environ, SCHEDULE_WORKER_DELAY_MS=str(WORKER_DELAY_MS))
    for name in ("SCHEDULE_SERVER_TOKEN", "BTQ_WORKER_PROTOCOL"):
        env.pop(name, None)
    process = subprocess.Popen(
        [
            args.server, "--port", "0", "--mode", "pool",
            "--pool-size", str(POOL_SIZE), "--queue-capacity", str(QUEUE_CAPACITY),
            "--threads", "2", "--data-dir", os.path.join(scratch, "data"),
            "--sample-data", args.sample_data, "--worker", args.worker, "--no-access-log",
        ],
        stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env, start_new_session=True,
    )
    log.close()
    log_path = os.path.join(scratch, "server.log")

    def port():
        with open(log_path, encoding="utf-8", errors="replace") as text:
            found = re.search(r"listening on http://127\.0\.0\.1:(\d+)", text.read())
        if process.poll() is not None:
            raise TestFailure("schedule_server exited at start")
        return int(found.group(1)) if found else None

    return process, wait_for(port, 15), log_path


def start_chromium(args, scratch):
    profile = os.path.join(scratch, "profile")
    os.makedirs(profile)
    command = [
        args.chromium, "--headless=new", "--remote-debugging-port=0",
        f"--user-data-dir={profile}", f"--window-size={WIDTH},{HEIGHT}",
        "--no-first-run", "--no-default-browser-check", "--disable-gpu",
        "--disable-extensions", "--disable-background-networking", "--disable-sync",
        "--disable-component-update", "--disable-default-apps", "--mute-audio",
        "--hide-scrollbars", "about:blank",
    ]
    if os.geteuid() == 0:
        command.insert(1, "--no-sandbox")  # Chromium refuses to run as root with its sandbox
    log = open(os.path.join(scratch, "chromium.log"), "wb")
    process = subprocess.Popen(
        command, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True
    )
    log.close()
    active = os.path.join(profile, "DevToolsActivePort")

    def port():
        if process.poll() is not None:
            raise TestFailure("chromium exited at start; see its log")
        try:
            with open(active, encoding="ascii") as text:
                lines = text.read().split("\n")
            return int(lines[0]) if len(lines) >= 2 and lines[0] else None
        except (OSError, ValueError):
            return None

    devtools_port = wait_for(port, 20)
    check(devtools_port, "chromium wrote no DevToolsActivePort within 20 s")
    return process, devtools_port


def page_target(devtools_port):
    def find():
        try:
            status, body = http_get(devtools_port, "/json/list", timeout=5)
        except OSError:
            return None
        pages = [t for t in json.loads(body) if t.get("type") == "page"]
        return pages[0]["webSocketDebuggerUrl"] if status == 200 and pages else None

    url = wait_for(find, 10, 0.2)
    check(url, "chromium lists no page target")
    return url


def stop(process, name):
    """SIGTERM to the process group, SIGKILL after 5 s; never raises."""
    if process is None or process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=5)
    except (ProcessLookupError, PermissionError):
        pass
    except subprocess.TimeoutExpired:
        print(f"{name} did not stop within 5 s: killing it", file=sys.stderr)
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait()


# --- Load ------------------------------------------------------------------------------------


class Load:
    """CLIENTS threads sending GET /api/schedules, one connection a request; in waves (a number
    of them active that rises and falls over 40 s) so the charts have a shape."""

    def __init__(self, port, waves):
        self.port = port
        self.waves = waves
        self.running = True
        self.started = time.monotonic()
        self.answers = {}
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.client, args=(i,)) for i in range(CLIENTS)]

    def active(self, index):
        if not self.waves:
            return True
        phase = (time.monotonic() - self.started) / 40.0 * 2 * math.pi
        return index < 3 + round((CLIENTS - 3) * (0.5 - 0.5 * math.cos(phase)))

    def client(self, index):
        while self.running:
            if not self.active(index):
                time.sleep(0.1)
                continue
            try:
                status, _ = http_get(self.port, "/api/schedules", timeout=30)
            except OSError:
                status = 0
            with self.lock:
                self.answers[status] = self.answers.get(status, 0) + 1
            if status != 200:
                time.sleep(0.25)  # refused (queue full): not at once again

    def __enter__(self):
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *failure):
        self.running = False
        for thread in self.threads:
            thread.join()


# --- The test --------------------------------------------------------------------------------

READ_PAGE = """JSON.stringify(Object.fromEntries(
    ["connection-state", "running", "max-concurrency", "waiting", "capacity", "processed",
     "throughput", "rejected", "errors", "timeouts", "held-for-memory", "workers-ready",
     "wait-p50", "wait-p99", "run-p50", "run-p99", "mode", "recent-error-count"]
    .map((id) => [id, document.getElementById(id).textContent])))"""


def number(text):
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def run(args, scratch):
    server = chromium = devtools = None
    try:
        began = time.monotonic()
        server, port, server_log = start_server(args, scratch)
        check(port, "schedule_server did not start listening within 15 s")
        chromium, devtools_port = start_chromium(args, scratch)
        devtools = DevTools(page_target(devtools_port))
        for domain in ("Runtime", "Log", "Page"):
            devtools.call(domain + ".enable")
        devtools.call(
            "Emulation.setDeviceMetricsOverride",
            {"width": WIDTH, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": False},
        )
        devtools.call("Page.navigate", {"url": f"http://127.0.0.1:{port}/"})

        def page():
            return json.loads(devtools.evaluate(READ_PAGE) or "{}")

        def loaded():
            try:
                values = page()
            except TestFailure:
                return None  # the document is not there yet
            return values if values.get("connection-state") == "live" and number(
                values.get("running")) is not None else None

        first = wait_for(loaded, 10, 0.2)
        check(first, "the page did not go live (EventSource) within 10 s")
        check(first["mode"] == "pool", f"mode shown: {first['mode']}")
        check(first["max-concurrency"] == str(POOL_SIZE), f"max shown: {first['max-concurrency']}")
        check(first["capacity"] == str(QUEUE_CAPACITY), f"capacity shown: {first['capacity']}")
        check(first["workers-ready"] == str(POOL_SIZE), f"workers shown: {first['workers-ready']}")
        print(f"page live after {time.monotonic() - began:.1f} s: {first}")

        seen = {"full": None, "throughput": None}
        with Load(port, waves=args.load_seconds > 20) as load:
            load_end = time.monotonic() + args.load_seconds
            while time.monotonic() < load_end:
                values = page()
                if (values["running"] == str(POOL_SIZE) and (number(values["waiting"]) or 0) > 0
                        and seen["full"] is None):
                    seen["full"] = values
                if (number(values["throughput"]) or 0) > 0 and seen["throughput"] is None:
                    seen["throughput"] = values
                time.sleep(0.25)
            if args.screenshot:
                shot = devtools.call("Page.captureScreenshot", {"format": "png"})
                with open(args.screenshot, "wb") as out:
                    out.write(base64.b64decode(shot["data"]))
                print(f"screenshot: {args.screenshot}")
        print(f"load answers by status: {load.answers}")
        check(seen["full"], "the page never showed every slot running and requests waiting")
        check(seen["throughput"], "the page never showed a throughput above 0")
        print(f"under load: {seen['full']}")

        # Quiet again: the page ends equal to the server.
        check(wait_for(lambda: (lambda s: s["processPool"]["activeProcesses"] == 0 and
                                s["processPool"]["queuedTasks"] == 0)(queue_stats(port)), 15),
              "the server did not go idle after the load")
        final = queue_stats(port)
        expected = {
            "running": "0",
            "waiting": "0",
            "processed": str(final["processPool"]["totalProcessed"]),
            "errors": str(final["processPool"]["totalErrors"]),
            "rejected": str(final["queue"]["rejected"]),
            "recent-error-count": str(len(final["recentErrors"])),
        }
        settled = wait_for(
            lambda: (lambda v: v if all(v[k] == e for k, e in expected.items()) else None)(page()),
            5, 0.2)
        check(settled, f"the page did not come to the server's numbers {expected}: {page()}")
        if load.answers.get(503, 0) > 0:
            check(final["recentErrors"] and final["recentErrors"][0]["status"] == 503,
                  "503s were answered but recentErrors does not list them")
            rows = devtools.evaluate(
                "document.querySelectorAll('#recent-errors tr td.status').length")
            check(rows == len(final["recentErrors"]), f"error table rows: {rows}")
        print(f"settled: {settled}")

        problems = devtools.problems()
        check(not problems, "the console shows problems:\n  " + "\n  ".join(problems))
        print(f"no console errors or exceptions ({len(devtools.events)} events seen); "
              f"{time.monotonic() - began:.1f} s")
    finally:
        if devtools is not None:
            devtools.socket.close()
        stop(chromium, "chromium")
        stop(server, "schedule_server")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", required=True)
    parser.add_argument("--worker", required=True)
    parser.add_argument("--sample-data", required=True)
    parser.add_argument("--chromium", default=shutil.which("chromium") or "chromium")
    parser.add_argument("--load-seconds", type=float, default=8)
    parser.add_argument("--screenshot", help="write a PNG of the page under load here")
    args = parser.parse_args()
    scratch = tempfile.mkdtemp(prefix="btq-browser-test-")
    try:
        run(args, scratch)
    except TestFailure as failure:
        print(f"FAILED: {failure}", file=sys.stderr)
        for name in ("server.log", "chromium.log"):
            path = os.path.join(scratch, name)
            if os.path.exists(path):
                with open(path, encoding="utf-8", errors="replace") as text:
                    tail = text.read()[-3000:]
                print(f"--- {name} (end) ---\n{tail}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print("PASSED")
    return 0


if __name__ == "__main__":
    sys.exit(main())
