"""serve's HTTP side (``serve --http``), on the standard library's threading HTTP server:
``/metrics`` (Prometheus, by ``prometheus_client`` from a collector reading the ``Fleet``),
``/healthz`` (200 or 503, never behind the token: a probe carries none), ``/`` the dashboard
(``static/``: a page and a script polling ``/fleet.json``; no CDN, nothing from outside),
``/frame/SENSOR.jpg`` each sensor's latest frame. With a token every other path needs
``Authorization: Bearer TOKEN`` or ``?token=TOKEN``, but the page's script and style (no
data in them: a browser loads them without the page's query)."""
import hmac
import ipaddress
import json
import re
import socket
import socketserver
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import (CounterMetricFamily, GaugeMetricFamily,
                                            HistogramMetricFamily)

from ..runtime.console import say
from .fleet import Fleet

__all__ = ["Dashboard", "parse_address", "is_loopback"]

STATIC = Path(__file__).parent / "static"
FILES = {"/": ("index.html", "text/html; charset=utf-8"),
         "/dashboard.js": ("dashboard.js", "text/javascript; charset=utf-8"),
         "/dashboard.css": ("dashboard.css", "text/css; charset=utf-8")}
FRAME = re.compile(r"/frame/([0-9a-f]{16})\.jpg")
LINK_COUNTERS = {  # LinkStats field: (metric, help)
    "frames": ("frames", "frames received intact (heartbeats included)"),
    "corrupted": ("corrupted_frames", "frames that failed a CRC"),
    "skipped_bytes": ("skipped_bytes", "bytes thrown away while resynchronising"),
    "old_version": ("old_version_frames", "version-1 frames, refused"),
    "unauthenticated": ("unauthenticated_frames", "frames without a valid MAC, dropped"),
    "duplicates": ("duplicate_frames", "frames received again (a message already delivered is "
                                       "handed on once more: answered, or found a collision)"),
    "rate_limited": ("rate_limited_messages", "messages over a sensor's rate, dropped"),
    "messages": ("received_messages", "messages reassembled"),
    "heartbeats": ("heartbeats", "heartbeats received"),
}
HEARTBEAT_GAUGES = {  # heartbeat field: (metric, help)
    "spool": ("sensor_spool_messages", "messages in the sensor's spool (its last heartbeat)"),
    "spool_bytes": ("sensor_spool_bytes", "bytes in the sensor's spool"),
    "in_flight": ("sensor_in_flight_messages", "messages sent and not yet acknowledged"),
    "dropped": ("sensor_dropped_messages", "messages the sensor gave up since its start "
                                           "(spool full)"),
    "uptime": ("sensor_uptime_seconds", "seconds since the sensor started"),
    "boot": ("sensor_boot", "the sensor's boot number"),
    "time": ("sensor_heartbeat_timestamp_seconds", "when its last heartbeat came"),
}


def parse_address(text: str) -> "tuple[str, int]":
    """(host, port) of ``PORT`` (on 127.0.0.1), ``HOST:PORT`` or ``[IPv6]:PORT``."""
    host, colon, port = text.rpartition(":")
    if not colon:
        host = "127.0.0.1"
    elif host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host or not host:
        host = ""  # an IPv6 address needs brackets; an empty host is no host
    if not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"{text}: not PORT or HOST:PORT (e.g. 9100, 127.0.0.1:9100, "
                         "0.0.0.0:9100 or [::1]:9100)")
    return host, int(port)


def is_loopback(host: str) -> bool:
    """Whether every address ``host`` names is on this machine alone."""
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise ValueError(f"{host}: unknown host ({e.strerror})") from None
    return all(ipaddress.ip_address(info[4][0].split("%")[0]).is_loopback for info in infos)


class FleetCollector:
    """The Fleet as Prometheus metric families, read at each scrape."""

    def __init__(self, fleet):
        self.fleet = fleet

    def collect(self):
        s = self.fleet.snapshot()
        messages = CounterMetricFamily("walloc_edge_messages", "messages handled, by outcome",
                                       labels=["outcome"])
        for outcome, n in s["messages"].items():
            messages.add_metric([outcome], n)
        yield messages
        yield CounterMetricFamily("walloc_edge_message_bytes", "bytes of the messages handled",
                                  value=s["bytes"])
        d = s["decode_seconds"]
        yield HistogramMetricFamily(
            "walloc_edge_decode_seconds", "seconds to verify, decode and write a message",
            buckets=[(str(le), n) for le, n in zip(d["le"], d["cumulative"])] +
            [("+Inf", d["cumulative"][-1])], sum_value=d["sum"])
        link = s["link"]
        for field, (name, doc) in LINK_COUNTERS.items():
            if field in link:
                yield CounterMetricFamily(f"walloc_edge_{name}", doc, value=link[field])
        gauges = {"lost": ("lost_messages", "messages never completed (a resend may complete "
                                            "one later)"),
                  "queue": ("queue_depth", "complete messages in the receiver's queue"),
                  "held_bytes": ("held_bytes", "bytes messages hold from their first byte "
                                               "until handled (the receiver's memory account)"),
                  "connections": ("connections", "open TCP connections")}
        for field, (name, doc) in gauges.items():
            if link.get(field) is not None:
                yield GaugeMetricFamily(f"walloc_edge_{name}", doc, value=link[field])
        yield GaugeMetricFamily("walloc_edge_healthy", "1 while receiving and able to write",
                                value=int(s["healthy"]))
        yield GaugeMetricFamily("walloc_edge_sensors", "sensors tracked (at most "
                                f"{s['max_sensors']}; more are counted as 'other')",
                                value=sum(r["id"] != "other" for r in s["sensors"]))
        yield from self._sensors(s["sensors"])

    @staticmethod
    def _sensors(rows):
        family = {
            "messages": CounterMetricFamily("walloc_edge_sensor_messages", "messages of a "
                                            "sensor, by outcome", labels=["sensor", "outcome"]),
            "bytes": CounterMetricFamily("walloc_edge_sensor_message_bytes",
                                         "bytes of a sensor's messages", labels=["sensor"]),
            "lost": GaugeMetricFamily("walloc_edge_sensor_lost_messages",
                                      "a sensor's messages never completed", labels=["sensor"]),
            "last_seen": GaugeMetricFamily("walloc_edge_sensor_last_seen_timestamp_seconds",
                                           "when a sensor was last heard", labels=["sensor"]),
            "info": GaugeMetricFamily("walloc_edge_sensor_info", "a sensor's version, "
                                      "backend and name (its last heartbeat)",
                                      labels=["sensor", "version", "backend", "name"]),
        }
        beats = {k: GaugeMetricFamily(f"walloc_edge_{name}", doc, labels=["sensor"])
                 for k, (name, doc) in HEARTBEAT_GAUGES.items()}
        for row in rows:
            sensor = [row["id"]]
            for outcome, n in row["messages"].items():
                family["messages"].add_metric(sensor + [outcome], n)
            for k in ("bytes", "lost", "last_seen"):
                family[k].add_metric(sensor, row[k])
            beat = row["heartbeat"] or {}
            for k, gauge in beats.items():
                if k in beat:
                    gauge.add_metric(sensor, beat[k])
            if beat:
                family["info"].add_metric(sensor + [beat.get("version", ""),
                                                    beat.get("backend", ""),
                                                    beat.get("name", "")], 1)
        yield from family.values()
        yield from beats.values()


class _Slot:
    """One connection the dashboard holds: from when, from where, and whether its request
    is still arriving."""

    def __init__(self, host):
        self.taken, self.host, self.reading = time.monotonic(), host, True
        self.shut = False  # by the server (room made, or late): its handler's error unsaid


class _Server(ThreadingHTTPServer):
    """A thread a connection, as http.server's, but bounded: a client that trickles its
    request a byte at a time, or opens a thousand, held a thread and a file each, unbounded,
    until the sensors' connections found no file to be had. At most ``max_connections`` at
    once, ``per_host`` of one address; a request must arrive within ``request_deadline``
    seconds and be answered within ``deadline``; and where the slots are full, the oldest
    connection whose request is still arriving makes room for the new one (a new one is
    closed only where every slot is being answered), so that trickling connections cannot
    keep an operator, or a /healthz probe, out."""
    daemon_threads = True
    allow_reuse_port = False  # a port in use is refused, never shared
    max_connections, per_host = 64, 16
    request_deadline, deadline = 5.0, 30.0

    def server_bind(self):  # HTTPServer's looks the host's name up, which may hang
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]
        self.active, self.active_lock = {}, threading.Lock()  # connection → its _Slot

    def process_request(self, request, client_address):
        host, room = client_address[0], None
        with self.active_lock:
            for limit, whose in ((self.per_host, host), (self.max_connections, None)):
                held = [(r, s) for r, s in self.active.items()  # (those shut are going)
                        if whose in (None, s.host) and not s.shut]
                if len(held) < limit:
                    continue
                arriving = [(s.taken, r) for r, s in held if s.reading]
                room = min(arriving, key=lambda item: item[0])[1] if arriving else request
                break
            if room is not request:
                self.active[request] = _Slot(host)
            if room in self.active:
                self.active[room].shut = True
        if room is request:
            return self.shutdown_request(request)
        if room is not None:
            _shut(room)  # the oldest request still arriving
        try:
            super().process_request(request, client_address)
        except RuntimeError:  # no thread to be had: the connection goes, the server stays
            with self.active_lock:
                self.active.pop(request, None)
            raise

    def request_arrived(self, request):
        with self.active_lock:
            if request in self.active:
                self.active[request].reading = False

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self.active_lock:
                self.active.pop(request, None)

    def service_actions(self):  # serve_forever's every turn: the connections past deadline
        now = time.monotonic()
        with self.active_lock:
            late = [r for r, s in self.active.items() if now - s.taken > (
                self.request_deadline if s.reading else self.deadline)]
            for request in late:
                self.active[request].shut = True
        for request in late:
            _shut(request)  # its thread's read or write ends, and the thread

    def handle_error(self, request, client_address):
        with self.active_lock:
            slot = self.active.get(request)
        if not (slot and slot.shut):  # one it shut itself is no failure to say
            self.dashboard.log(f"the dashboard failed to answer {client_address[0]}")


def _shut(request):
    try:
        request.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


class _Server6(_Server):
    address_family = socket.AF_INET6


class Dashboard:
    """The HTTP side of serve for ``fleet``, bound to ``host:port`` at once (ValueError when
    it cannot be: a port in use), served from ``start()`` on a thread of its own until
    ``close()`` (a context manager). ``token``: what every path but /healthz needs."""

    def __init__(self, fleet: Fleet, host: str, port: int, token: "str | None" = None,
                 log=say):
        self.fleet, self.token, self.log = fleet, token, log
        self.registry = CollectorRegistry()
        for collector in (ProcessCollector, PlatformCollector, GCCollector):
            collector(registry=self.registry)
        self.registry.register(FleetCollector(fleet))
        server = _Server6 if ":" in host else _Server
        try:
            self.server = server((host, port), _Handler)
        except OSError as e:
            raise ValueError(f"{host}:{port}: cannot listen ({e.strerror or e})") from None
        self.server.dashboard = self
        self.thread = None

    @property
    def url(self) -> str:
        """Where to open it: bound to every address, as this machine's name."""
        host, port = self.server.server_address[:2]
        if host in ("0.0.0.0", "::"):
            host = socket.gethostname()
        return f"http://{f'[{host}]' if ':' in host else host}:{port}/"

    def allows(self, authorization: "str | None", query: dict) -> bool:
        if not self.token:
            return True
        given = (authorization or "").removeprefix("Bearer ").strip() or \
            (query.get("token") or [""])[0]
        return hmac.compare_digest(given.encode(), self.token.encode())

    def start(self) -> None:
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.2,),
                                       name="dashboard", daemon=True)
        self.thread.start()

    def close(self) -> None:
        if self.thread is not None:
            self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> "Dashboard":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _Handler(BaseHTTPRequestHandler):
    timeout = 10  # seconds a client may keep its connection (and a thread) idle
    server_version = "walloc-edge"

    def parse_request(self):  # the request has arrived: its slot is no longer made room of
        self.server.request_arrived(self.request)
        return super().parse_request()

    def do_GET(self):  # noqa: N802 - http.server's name
        url = urlsplit(self.path)
        dashboard = self.server.dashboard
        if url.path == "/healthz":
            healthy, why = dashboard.fleet.health()
            return self._send(200 if healthy else 503, why.encode() + b"\n", "text/plain")
        if url.path in FILES and url.path != "/":  # the page's script and style: no data,
            return self._static(url.path)  # and a browser asks for them without the token
        if not dashboard.allows(self.headers.get("Authorization"), parse_qs(url.query)):
            return self._send(401, b"a token is needed: Authorization: Bearer TOKEN or "
                                   b"?token=TOKEN\n", "text/plain",
                              {"WWW-Authenticate": "Bearer"})
        if url.path == "/metrics":
            encoder, kind = choose_encoder(self.headers.get("Accept"))
            return self._send(200, encoder(dashboard.registry), kind)
        if url.path == "/fleet.json":
            return self._send(200, json.dumps(dashboard.fleet.snapshot()).encode(),
                              "application/json", {"Cache-Control": "no-store"})
        frame = FRAME.fullmatch(url.path)
        if frame:
            data = dashboard.fleet.thumbnail(frame.group(1))
            if data is None:
                return self._send(404, b"no frame\n", "text/plain")
            return self._send(200, data, "image/jpeg", {"Cache-Control": "no-store"})
        if url.path == "/":
            return self._static(url.path)
        self._send(404, b"not found\n", "text/plain")

    def _static(self, path):
        name, kind = FILES[path]
        self._send(200, (STATIC / name).read_bytes(), kind, {
            "Content-Security-Policy": "default-src 'self'; img-src 'self'"})

    def _send(self, status, body, kind, headers=None):
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):  # serve's output is a line per message
        pass
