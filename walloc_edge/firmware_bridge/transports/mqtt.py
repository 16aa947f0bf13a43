"""mqtt://[USER[:PASS]@]BROKER[:1883]/TOPIC and mqtts:// (TLS), with paho-mqtt: one QoS-1
publish per message; acknowledgements come back on TOPIC/ack/SENSOR/REPLY, the reply topic
of the sending process alone (a random token it sends with each message): two processes
under one sensor id (two streams on a device, two devices given one --sensor-id) each take
only the answers to their own messages. A receiver may use a shared subscription
(``/$share/GROUP/TOPIC``) so that several servers split one topic's messages between
them."""
import hashlib
import re
import secrets
import socket
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

from ...runtime.console import say
from ..framing import GARBAGE_LIMIT, AckReader, FrameReader
from .base import Address, Link, Receiver, Scheme, url_port


def _paho(url):
    """paho's client module; a ValueError naming the extra where it is not installed."""
    try:
        import paho.mqtt.client as mqtt
    except ImportError:
        raise ValueError(f"{url}: MQTT links need paho-mqtt: pip install "
                         "'walloc-edge[bridge]'") from None
    return mqtt


def parse(url, parsed, options):
    port = url_port(url, parsed)
    topic = parsed.path.lstrip("/")
    if not parsed.hostname or not topic:
        raise ValueError(f"{url}: give a broker and a topic, e.g. "
                         "mqtt://127.0.0.1:1883/sensors/cam1")
    named = topic.split("/", 2)[2] if topic.startswith("$share/") and topic.count("/") >= 2 \
        else topic
    if "#" in url or "+" in named:
        raise ValueError(f"{url}: + and # are MQTT's wildcards, not a topic's name; each "
                         "server and sensor names one (sensors reply on TOPIC/ack/…), and "
                         "servers share one with mqtt://BROKER/$share/GROUP/TOPIC")
    tls = parsed.scheme == "mqtts"
    options.update(tls=tls, username=parsed.username, password=parsed.password)
    return Address("mqtt", parsed.hostname, port or (8883 if tls else 1883), topic, options)


CONNECT_WAIT = 15.0  # seconds a server's start waits for its broker's answer
BUSY = {136, 137, 151, 159}  # server unavailable or busy, quota or connection rate exceeded


def _refuses(reason):
    """Whether a broker's answer refuses this client for good (a wrong password, not
    authorised, banned), not for now (busy: tried again in the background)."""
    return reason.is_failure and reason.value not in BUSY


def _mqtt_client(url, host, port, options, client_id, callbacks, wait=True, persistent=True):
    """A paho client, with a ``persistent`` session (the broker keeps its subscriptions and
    queued QoS-1 messages while it is away) or a clean one. ``callbacks`` (on_connect,
    on_message, ...) are set before it connects. ``wait``: connected and accepted now
    (the broker's first answer), or ValueError (a server starts only with its broker, and
    not with one that refuses it: a wrong password); otherwise paho keeps trying in the
    background from the start (a sensor that boots before its broker spools meanwhile)."""
    mqtt = _paho(url)
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=options.get(
        "client", client_id), clean_session=not persistent)
    client.reconnect_delay_set(min_delay=1, max_delay=10)
    _mqtt_security(client, url, options)
    answered, answer = threading.Event(), []
    if wait:  # the broker's first answer decides the start (a wrong password: refused)
        later = callbacks.get("on_connect")

        def on_connect(client, userdata, flags, reason, *args):
            first = not answered.is_set()
            if first:
                answer.append(reason)
                answered.set()
            if later is not None and not (first and _refuses(reason)):
                later(client, userdata, flags, reason, *args)

        callbacks = {**callbacks, "on_connect": on_connect}
    for name, callback in callbacks.items():
        setattr(client, name, callback)
    if wait:
        try:
            client.connect(host, port, keepalive=30)
        except OSError as e:
            raise ValueError(f"{_shown(url)}: cannot reach the broker "
                             f"({e.strerror or e})") from None
    else:
        client.connect_async(host, port, keepalive=30)
    client.loop_start()
    if wait and not (answered.wait(CONNECT_WAIT) and not _refuses(answer[0])):
        client.loop_stop()
        client.disconnect()
        raise ValueError(f"{_shown(url)}: the broker refuses this server ({answer[0]})"
                         if answer else f"{_shown(url)}: the broker did not answer within "
                         f"{CONNECT_WAIT:g} s")
    return client


def _mqtt_security(client, url, options):
    """mqtts:// (TLS, ``?ca=FILE`` to trust a private CA, ``?cert=FILE&key=FILE`` for a
    client certificate) and USER[:PASSWORD]@ (or ``?password_file=FILE``)."""
    if options.get("tls"):
        import ssl

        for name in ("ca", "cert", "key"):
            if options.get(name) and not Path(options[name]).is_file():
                raise ValueError(f"{url}: {name}={options[name]}: no such file")
        try:
            client.tls_set(ca_certs=options.get("ca"), certfile=options.get("cert"),
                           keyfile=options.get("key"), cert_reqs=ssl.CERT_REQUIRED)
        except (ssl.SSLError, OSError) as e:
            raise ValueError(f"{url}: TLS set-up failed ({e})") from None
    password = options.get("password")
    if options.get("password_file"):
        try:
            password = Path(options["password_file"]).read_text().strip()
        except OSError as e:
            raise ValueError(f"{url}: password_file: {e.strerror or e}") from None
    if options.get("username"):
        client.username_pw_set(options["username"], password)


class MqttLink(Link):
    """One QoS-1 publish per message (so that a shared subscription hands whole messages to
    servers); acknowledgements come back from the server on this process's own reply topic,
    TOPIC/ack/SENSOR/REPLY (and on TOPIC/ack/SENSOR from a server older than reply topics,
    which answers every process of a sensor there). Its client id is this process's too,
    with a clean session (two processes under one id would knock each other off the broker;
    an answer published while it was away is made up for by sending the message again,
    which the server answers again), unless ?client=ID names one: a persistent session,
    whose reply token is made from that id (the same topic at every start). A lost
    connection is said at once (``alive``, ``on_down``), so that what is unacknowledged is
    sent again as soon as the broker is back."""

    acks = True

    def __init__(self, url, host, port, topic, options, sensor, ack_key=None):
        super().__init__(url)
        self.topic, self.address = topic, (host, port)
        named = options.get("client")
        token = hashlib.sha256(named.encode()).hexdigest()[:16] if named else \
            secrets.token_hex(8)
        self.reply_meta = {"reply": token}
        self.ack_topics = (f"{topic}/ack/{sensor:016x}/{token}", f"{topic}/ack/{sensor:016x}")
        self.reader_key = ack_key
        self.refused = None
        self.client = _mqtt_client(
            url, host, port, options, client_id=f"walloc-edge-sensor-{sensor:016x}-{token}",
            callbacks={"on_connect": self._on_connect, "on_message": self._on_message,
                       "on_disconnect": self._on_disconnect},
            wait=False, persistent=bool(named))

    def _on_connect(self, client, userdata, flags, reason, properties):
        if getattr(reason, "is_failure", False):
            self.refused = str(reason)  # e.g. "Not authorized": retrying will not help
            return
        self.refused = None
        client.subscribe([(topic, 1) for topic in self.ack_topics])
        self.alive = True

    def _on_disconnect(self, client, userdata, flags, reason, *args):
        self.alive = False
        if self.on_down:
            self.on_down()

    def _on_message(self, client, userdata, message):
        for ack in AckReader(self.reader_key).feed(message.payload):
            if self.on_ack:
                self.on_ack(ack)

    def reconnect(self):
        """paho reconnects by itself; this says whether it is connected now."""
        if not self.client.is_connected():
            deadline = time.monotonic() + 2
            while not self.client.is_connected() and time.monotonic() < deadline:
                time.sleep(0.05)
        if not self.client.is_connected():
            raise ConnectionError(f"the broker refused the connection: {self.refused}"
                                  if self.refused else self._why_not())

    def _why_not(self):
        """Why the broker is not connected (a line), as far as one TCP connection can tell:
        paho retries in its thread without saying."""
        try:
            socket.create_connection(self.address, timeout=2).close()
        except OSError as e:
            reason = e.strerror or str(e)
            return f"{self.address[0]}: {reason}" if isinstance(e, socket.gaierror) else reason
        return "its port answers, but no MQTT session yet"

    def write(self, frames):
        if not self.client.is_connected():
            raise ConnectionError(f"{self.url}: the broker is not connected")
        info = self.client.publish(self.topic, b"".join(frames), qos=1)
        try:
            info.wait_for_publish(timeout=10)
        except (RuntimeError, ValueError) as e:  # paho: not connected, or queue full
            raise ConnectionError(f"{self.url}: the broker did not take the message "
                                  f"({e})") from None
        if not info.is_published():
            raise ConnectionError(f"{self.url}: the broker did not take the message")

    def close(self):
        self.client.loop_stop()
        self.client.disconnect()


class MqttReceiver(Receiver):
    """Each MQTT message holds the frames of one message; acknowledgements go to the
    sender's reply topic, TOPIC/ack/SENSOR/REPLY (TOPIC/ack/SENSOR for a sender with no
    reply token: an earlier walloc-edge). The session is persistent: messages published
    while this server is away wait at the broker."""

    def __init__(self, url, host, port, topic, options, keys=None, limits=None, log=say):
        super().__init__(keys, limits)
        self.topic, self.log = topic, log
        base = topic.split("/", 2)[2] if topic.startswith("$share/") else topic
        self.ack_base = base
        default_id = "walloc-edge-serve-" + hashlib.sha1(
            f"{socket.gethostname()}:{topic}".encode()).hexdigest()[:12]
        self.url = url
        self.client = _mqtt_client(url, host, port, options, client_id=default_id, callbacks={
            "on_connect": self._on_connect, "on_message": self._on_message,
            "on_disconnect": self._on_disconnect})

    def _on_connect(self, client, userdata, flags, reason, *args):
        if reason.is_failure:  # the broker answered, and refused: still down
            if self.down is None or "refused" not in self.down:
                self.down = f"the MQTT broker refuses this server ({reason})"
                self.log(f"{_shown(self.url)}: {self.down}; trying again")
            return
        client.subscribe(self.topic, qos=1)
        if self.down:
            self.down = None
            self.log(f"the broker is back ({_shown(self.url)}): subscribed again")

    def _on_disconnect(self, client, userdata, flags, reason, *args):
        if self.stopped.is_set() or self.down:
            return
        if str(reason) == "Unspecified error":  # paho's words for a connection that broke
            reason = "the connection broke"
        self.down = f"the MQTT broker is unreachable ({reason}); reconnecting"
        self.log(f"lost the broker ({_shown(self.url)}: {reason}); reconnecting: messages "
                 "wait at the broker, or in the sensors' spools")

    def _reply(self, data, received):
        token = received.meta.get("reply")
        topic = f"{self.ack_base}/ack/{received.sensor:016x}"
        if isinstance(token, str) and REPLY_TOKEN.fullmatch(token):
            topic += f"/{token}"
        info = self.client.publish(topic, data, qos=1)
        return info.rc == 0

    def _on_message(self, client, userdata, message):
        try:
            reader = FrameReader(self.stats, self.keys, give_up_after=GARBAGE_LIMIT,
                                 budget=self.garbage_budget)
            frames = reader.feed(message.payload)  # a publish of garbage is not all parsed
            self._frames(f"mqtt:{message.topic}", frames, self._reply)
            if reader.given_up:
                self.stats.corrupted += 1
                self._gave_up(f"dropped the rest of a message on {message.topic}", reader)
        except Exception as e:  # noqa: BLE001 - paho's loop thread must outlive any message
            self.stats.corrupted += 1
            self.log(f"dropped a message on {message.topic} ({type(e).__name__}: {e})")

    def stop(self):
        super().stop()
        self.client.loop_stop()
        self.client.disconnect()


REPLY_TOKEN = re.compile(r"[0-9a-f]{1,32}")  # a topic level; never a wildcard or a "/"


def _shown(url):
    """``url`` without a password in it, for the log."""
    parsed = urlsplit(url)
    if parsed.password is None:
        return url
    return parsed._replace(netloc=parsed.netloc.replace(f":{parsed.password}@", ":***@")).geturl()


def open_link(url, address, sensor, ack_key):
    """Connecting from the start, in the background; paho keeps it connected."""
    return MqttLink(url, address.host, address.port, address.path, address.options, sensor,
                    ack_key)


def open_receiver(url, address, keys, limits, log):
    return MqttReceiver(url, address.host, address.port, address.path, address.options, keys,
                        limits, log)


SCHEME = Scheme(
    names=("mqtt", "mqtts"), parse=parse, receiver=open_receiver, link=open_link, library=_paho,
    send_help="mqtt://[USER[:PASS]@]BROKER[:1883]/TOPIC or mqtts://...:8883/TOPIC[?ca=FILE] "
              "(TLS)",
    receive_help="mqtt://[USER[:PASS]@]BROKER[:1883]/TOPIC or mqtts://... (TLS, ?ca=FILE), "
                 "with /$share/GROUP/TOPIC to share the messages between servers (give each "
                 "its own ?client=NAME)")
