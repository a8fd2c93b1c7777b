"""A real mosquitto broker on a free loopback port, and a real paho subscriber collecting what arrives: the
MQTT tests' servers. Persistence is on, so a broker stopped (SIGTERM) and started again keeps a subscriber's
session and what was queued for it, as a production broker would."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from paho.mqtt import client as mqtt

from tests.helpers import free_port, wait_for_port

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


class Broker:
    def __init__(self, folder: Path) -> None:
        if not Path(MOSQUITTO).is_file():
            pytest.skip("mosquitto is not installed (apt-get install mosquitto; .ci/run does)")
        self.folder, self.port = folder, free_port()
        self.conf = folder / "mosquitto.conf"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
            f"persistence_location {folder}/\n"
        )
        self.proc: subprocess.Popen | None = None
        self.url = f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> Broker:
        log = (self.folder / "mosquitto.log").open("a")
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=log, stderr=log)
        log.close()
        wait_for_port(self.port, self.proc, timeout_s=10)
        return self

    def stop(self) -> None:
        """SIGTERM: mosquitto saves its sessions and queued messages, then exits."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None


class Subscriber:
    """Collects (topic, payload, retain) of everything under `topics`; a persistent session at QoS 1
    (clean_session off, fixed client id), resubscribed on every reconnect."""

    def __init__(self, port: int, topics: str, client_id: str = "") -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self._lock = threading.Condition()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=not client_id
        )
        self.client.reconnect_delay_set(0.2, 1)
        self.client.on_connect = lambda c, *_: c.subscribe(topics, qos=1)
        self.client.on_message = self._on_message
        self.client.connect_async("127.0.0.1", port, keepalive=5)
        self.client.loop_start()

    def _on_message(self, _client: mqtt.Client, _userdata: object, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((msg.topic, msg.payload, bool(msg.retain)))
            self._lock.notify_all()

    def on(self, topic: str) -> list[bytes]:
        with self._lock:
            return [payload for t, payload, _ in self.messages if t == topic]

    def wait_for(self, check: Callable[[], bool], timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        with self._lock:
            while not check():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"timed out after {timeout_s:g} s waiting for {what}: {self.messages!r}"[:2000]
                    )
                self._lock.wait(min(left, 0.2))

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.client.disconnect()
        self.client.loop_stop()
