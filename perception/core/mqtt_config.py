"""`output.mqtt`: where results are published over MQTT (perception/output/mqtt.py), validated at load.

Kept apart from config.py so that module stays one screenful per section; config.py embeds it in `output`.
"""

from __future__ import annotations

import re
from typing import Annotated, NamedTuple

from pydantic import Field, field_validator

from perception.core.config_base import _Strict

_URL = re.compile(r"(mqtts?)://(\[[0-9A-Fa-f:.]+\]|[^/:\s\[\]@]+)(?::(\d{1,5}))?(?:/(.*))?")
_TOPIC_LEVELS = re.compile(r"[^+#\x00]+(/[^+#\x00]+)*")


class MqttTarget(NamedTuple):
    """A broker address: host, port, TLS or not, and the topic prefix the URL names ('' if none)."""

    host: str
    port: int
    tls: bool
    prefix: str


def parse_mqtt_url(text: str) -> MqttTarget:
    """`mqtt://HOST[:PORT][/PREFIX]` (`mqtts://` for TLS, port 1883 / 8883 by default); ValueError saying
    what is wrong. Credentials never go in the URL (a command line is visible to every user of the host)."""
    match = _URL.fullmatch(text)
    if match is None:
        hint = " (credentials come from PERCEPTION_MQTT_USERNAME / _PASSWORD)" if "@" in text else ""
        raise ValueError(f"expected mqtt://HOST:PORT[/PREFIX] or mqtts://..., got {text!r}{hint}")
    scheme, host, port, prefix = match.groups()
    tls = scheme == "mqtts"
    number = int(port) if port else (8883 if tls else 1883)
    if not 0 < number <= 65535:
        raise ValueError(f"MQTT port must be from 1 to 65535, got {number}")
    prefix = (prefix or "").strip("/")
    if prefix and not _TOPIC_LEVELS.fullmatch(prefix):
        raise ValueError(f"MQTT topic prefix {prefix!r}: no '+', '#' or empty levels")
    return MqttTarget(host.strip("[]"), number, tls, prefix)


class MqttConfig(_Strict):
    url: str | None = None
    prefix: Annotated[str, Field(min_length=1, max_length=200)] = "perception"
    client_id: Annotated[str, Field(max_length=128)] = ""
    qos: Annotated[int, Field(ge=0, le=2)] = 1
    tls: bool = False
    tracks_hz: Annotated[float, Field(ge=0, le=100)] = 0.0
    outbox_size: Annotated[int, Field(ge=10, le=1_000_000)] = 1000
    keepalive_s: Annotated[int, Field(ge=5, le=3600)] = 10
    reconnect_max_s: Annotated[float, Field(gt=0, le=600)] = 2.0
    drain_timeout_s: Annotated[float, Field(ge=0, le=600)] = 5.0

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None:
            parse_mqtt_url(value)
        return value

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if not _TOPIC_LEVELS.fullmatch(value):
            raise ValueError("a topic prefix: no '+', '#', empty levels or leading/trailing '/'")
        return value

    @property
    def target(self) -> MqttTarget | None:
        """The broker to publish to (URL prefix over `prefix`, `tls` or mqtts://), or None when off."""
        if self.url is None:
            return None
        t = parse_mqtt_url(self.url)
        return MqttTarget(t.host, t.port, t.tls or self.tls, t.prefix or self.prefix)
