"""MQTT output (`--mqtt`, `output.mqtt`): warning changes, each stream's state and a track summary, for the
systems around the car (dashboards, fleet backends, home-automation-style rules) to react to.

Topics under the prefix: `PREFIX/available` (`online`, `offline`: retained, and the last will, so a killed
run reads `offline`), and per stream `PREFIX/STREAM/fcw` (the FcwEvent records, QoS `qos`),
`PREFIX/STREAM/state` (retained: a late subscriber learns it at once) and `PREFIX/STREAM/tracks` (at most
`tracks_hz`, QoS 0).

The broker must never stop or slow the pipeline: a sink only puts a small message in a bounded outbox;
one thread of ours hands messages to paho while connected, paho's own thread connects, reconnects (backing
off to `reconnect_max_s`) and resends QoS 1 messages that were not acknowledged. A full outbox drops its
oldest non-warning message (counted); a newer state or track summary replaces a pending one of its stream.
"""

from __future__ import annotations

import collections
import json
import math
import os
import socket
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from perception.core.errors import PerceptionError
from perception.core.events import EndEvent, SourceEvent
from perception.core.mqtt_config import MqttConfig, MqttTarget
from perception.core.types import FrameResult

USERNAME_ENV, PASSWORD_ENV = "PERCEPTION_MQTT_USERNAME", "PERCEPTION_MQTT_PASSWORD"
_PAHO_INFLIGHT = 20  # QoS 1 messages on the wire awaiting their ack
_PAHO_QUEUE = 100  # messages paho holds at most (the rest wait in our outbox, where dropping is ours)


@dataclass(slots=True)
class Message:
    topic: str
    payload: bytes
    qos: int
    retain: bool = False
    warning: bool = False  # a warning change: dropped last when the outbox is full
    key: str | None = None  # a newer message with the same key replaces this one while it waits


class Outbox:
    """A bounded FIFO of messages waiting for the broker. Not thread-safe: the publisher's lock guards it."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.items: collections.deque[Message] = collections.deque()
        self.dropped = 0

    def put(self, message: Message) -> None:
        if message.key is not None:
            for i, waiting in enumerate(self.items):
                if waiting.key == message.key:
                    del self.items[i]  # superseded: not a loss
                    break
        if len(self.items) >= self.size:
            victim = next((i for i, m in enumerate(self.items) if not m.warning), 0)
            del self.items[victim]
            self.dropped += 1
        self.items.append(message)


def topic_level(name: str) -> str:
    """A stream name as one topic level: no '/', '+', '#' or NUL in it, never empty."""
    return "".join("_" if c in "/+#\x00" else c for c in name) or "_"


def _dumps(record: dict[str, Any]) -> bytes:
    return json.dumps(record, allow_nan=False, separators=(",", ":")).encode()


class MqttPublisher:
    """One MQTT connection for a run, shared by its streams (`stream(name, ...)` gives each its sink)."""

    def __init__(self, cfg: MqttConfig) -> None:
        target = cfg.target
        if target is None:
            raise ValueError("output.mqtt.url is not set")
        try:
            from paho.mqtt import client as mqtt
        except ImportError:
            raise PerceptionError('--mqtt needs paho-mqtt: pip install -e ".[mqtt]"') from None
        self.cfg, self.target = cfg, target
        self.address = f"{target.host}:{target.port}"
        self._mqtt = mqtt
        self._cond = threading.Condition()
        self._outbox = Outbox(cfg.outbox_size)
        self._connected = self._ever_connected = self._stop = False
        self._handed = self._delivered = 0  # to paho; acknowledged (QoS 1) or written (QoS 0)
        self._said: str | None = None  # the last connection state printed
        client_id = cfg.client_id or f"perception-{socket.gethostname()}-{os.getpid()}"
        self._client = self._make_client(client_id, target)
        self._sender = threading.Thread(target=self._send_loop, name="mqtt-send", daemon=True)

    def _make_client(self, client_id: str, target: MqttTarget) -> Any:
        mqtt = self._mqtt
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311)
        client.will_set(self.topic("available"), b"offline", qos=1, retain=True)
        user = os.environ.get(USERNAME_ENV)
        if user:
            client.username_pw_set(user, os.environ.get(PASSWORD_ENV))
        if target.tls:
            client.tls_set()
        client.max_inflight_messages_set(_PAHO_INFLIGHT)
        client.max_queued_messages_set(_PAHO_QUEUE)
        client.reconnect_delay_set(min(0.5, self.cfg.reconnect_max_s), self.cfg.reconnect_max_s)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        return client

    def topic(self, *levels: str) -> str:
        return "/".join((self.target.prefix, *levels))

    def start(self) -> MqttPublisher:
        """Connect in the background: a broker that is down now is retried; messages wait meanwhile."""
        try:
            self._client.connect_async(self.target.host, self.target.port, keepalive=self.cfg.keepalive_s)
        except (OSError, ValueError) as exc:
            raise PerceptionError(f"mqtt {self.address}: {exc}") from None
        self._client.loop_start()
        self._sender.start()
        print(f"perception: mqtt -> {self.address} topics {self.topic('#')}", file=sys.stderr)
        return self

    def __enter__(self) -> MqttPublisher:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def stream(self, name: str, source: str, live: bool, labels: Sequence[str]) -> MqttStreamSink:
        return MqttStreamSink(self, topic_level(name), source, live, labels)

    def put(self, message: Message) -> None:
        """Queue a message (never blocks on the network)."""
        with self._cond:
            self._outbox.put(message)
            self._cond.notify_all()

    # -- paho's thread -------------------------------------------------------------------------------
    def _on_connect(self, client: Any, _userdata: Any, _flags: Any, reason: Any, _props: Any = None) -> None:
        if reason.is_failure:
            self._say(f"refused by the broker: {reason}; retrying")
            return
        with self._cond:
            self._handed += 1
        client.publish(self.topic("available"), b"online", qos=1, retain=True)
        with self._cond:
            self._connected = self._ever_connected = True
            self._cond.notify_all()
        self._say("connected")

    def _on_disconnect(self, _c: Any, _u: Any, _flags: Any, reason: Any, _props: Any = None) -> None:
        with self._cond:
            self._connected = False
        if not self._stop:
            self._say(f"connection lost ({reason}); reconnecting, messages wait in the outbox")

    def _on_publish(self, _c: Any, _u: Any, _mid: int, _reason: Any = None, _props: Any = None) -> None:
        with self._cond:
            self._delivered += 1
            self._cond.notify_all()

    def _say(self, state: str) -> None:
        if state != self._said:
            self._said = state
            print(f"perception: mqtt {self.address} {state}", file=sys.stderr)

    # -- our sender thread ---------------------------------------------------------------------------
    def _send_loop(self) -> None:
        ok, no_conn = self._mqtt.MQTT_ERR_SUCCESS, self._mqtt.MQTT_ERR_NO_CONN
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._stop or (self._connected and self._outbox.items), 0.5)
                if self._stop:
                    return
                if not (self._connected and self._outbox.items):
                    continue
                message = self._outbox.items.popleft()
                self._handed += 1
            info = self._client.publish(message.topic, message.payload, message.qos, message.retain)
            if info.rc == ok or (info.rc == no_conn and message.qos > 0):  # paho resends it on reconnect
                continue
            with self._cond:  # paho's queue is full, or a QoS 0 message found no connection: later
                self._handed -= 1
                self._outbox.items.appendleft(message)
                self._cond.wait(0.05)

    @property
    def pending(self) -> int:
        """Messages not yet delivered: waiting in the outbox, or handed to paho and not acknowledged."""
        with self._cond:
            return len(self._outbox.items) + max(self._handed - self._delivered, 0)

    def close(self) -> None:
        """Deliver what waits (at most `drain_timeout_s`, only if the broker was ever reached), say
        `offline`, disconnect cleanly (no last will) and report what was delivered, dropped and lost."""
        if self._stop:
            return
        deadline = time.monotonic() + self.cfg.drain_timeout_s
        with self._cond:
            if self._ever_connected:
                self._cond.wait_for(
                    lambda: not self._outbox.items and self._handed <= self._delivered,
                    max(deadline - time.monotonic(), 0),
                )
            self._stop = True
            self._cond.notify_all()
        self._sender.join(timeout=2)
        if self._connected:
            info = self._client.publish(self.topic("available"), b"offline", qos=1, retain=True)
            info.wait_for_publish(timeout=max(min(deadline - time.monotonic(), 2.0), 0.2))
        self._client.disconnect()
        self._client.loop_stop()
        pending = len(self._outbox.items) + max(self._handed - self._delivered, 0)
        print(
            f"perception: mqtt {self.address}: {self._delivered} messages delivered, "
            f"{self._outbox.dropped} dropped (outbox full), {pending} undelivered",
            file=sys.stderr,
        )

    @property
    def dropped(self) -> int:
        return self._outbox.dropped


class MqttStreamSink:
    """A stream's messages: its warning changes, its state (retained) and, at `tracks_hz`, its tracks."""

    def __init__(
        self, publisher: MqttPublisher, level: str, source: str, live: bool, labels: Sequence[str]
    ) -> None:
        self.publisher, self.stream = publisher, level
        self.source, self.live, self.labels = source, live, list(labels)
        cfg = publisher.cfg
        self._qos = cfg.qos
        self._tracks_every_s = 1.0 / cfg.tracks_hz if cfg.tracks_hz > 0 else math.inf
        self._tracks_at = -math.inf
        self._running = False
        self.state("starting")

    def state(self, state: str, **details: Any) -> None:
        record = {"stream": self.stream, "source": self.source, "live": self.live, "state": state}
        record.update(details, at_s=round(time.time(), 3))
        topic = self.publisher.topic(self.stream, "state")
        self.publisher.put(Message(topic, _dumps(record), self._qos, retain=True, key=topic))

    def on_source(self, event: SourceEvent) -> None:
        """A live source's health change (connected, stalled, ...): the stream's state now."""
        details = {k: v for k, v in event.to_dict().items() if k not in ("type", "state")}
        self.state(event.state.value, **details)

    def ended(self, end: EndEvent) -> None:
        self.state("ended", **{k: v for k, v in end.to_dict().items() if k != "type"})

    def write(self, result: FrameResult) -> None:
        if not self._running:
            self._running = True
            self.state("running")
        topic = self.publisher.topic(self.stream, "fcw")
        for event in result.events:
            record = {"stream": self.stream, **event.to_dict()}
            self.publisher.put(Message(topic, _dumps(record), self._qos, warning=True))
        now = time.monotonic()
        if self._tracks_every_s < math.inf and now - self._tracks_at >= self._tracks_every_s:
            self._tracks_at = now
            topic = self.publisher.topic(self.stream, "tracks")
            self.publisher.put(Message(topic, _dumps(self._tracks(result)), 0, key=topic))

    def _tracks(self, result: FrameResult) -> dict[str, Any]:
        t = result.tracks

        def num(value: float, digits: int) -> float | None:
            return None if math.isnan(value) else round(value, digits)

        rows = zip(t.ids.tolist(), t.label_ids.tolist(), t.dist_m.tolist(), t.ttc_s.tolist(), strict=True)
        flags = zip(t.ttc_plausible.tolist(), t.in_path.tolist(), t.lead.tolist(), strict=True)
        return {
            "stream": self.stream,
            "frame": result.frame.index,
            "source_ts_s": round(result.frame.source_ts_s, 6),
            "fcw": result.warning.level.label,
            "tracks": [
                {
                    "id": i,
                    "label": self.labels[label],
                    "dist_m": num(dist, 2),
                    "ttc_s": num(ttc, 3) if trusted else None,
                    "in_path": ahead,
                    "lead": lead,
                }
                for (i, label, dist, ttc), (trusted, ahead, lead) in zip(rows, flags, strict=True)
            ],
        }

    def close(self) -> None:
        """Nothing of its own: the run's end reaches `ended`, the connection closes with the publisher."""
