"""`--foxglove [HOST:PORT]` (`output.foxglove`): a live Foxglove WebSocket server (foxglove-sdk) with the same
channels as run.mcap (recording.py), so a car's run is watched in Foxglove as it happens.

Messages are JSON on JSON-schema channels; the SDK queues them per client and drops for a client too slow to
keep up, so a viewer never slows the pipeline, and a channel nobody subscribes to costs nothing (its image
is not even encoded).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

from perception.core.config_output import OutputConfig, parse_host_port
from perception.core.errors import PerceptionError, first_line
from perception.output.recording import SCHEMAS, TOPICS, FoxgloveStreamSink


class FoxgloveLive:
    """The server for a run; `stream(name, labels)` gives each stream its sink."""

    def __init__(self, cfg: OutputConfig) -> None:
        if cfg.foxglove is None:
            raise ValueError("output.foxglove is not set")
        try:
            import foxglove
        except ImportError:
            raise PerceptionError('--foxglove needs foxglove-sdk: pip install -e ".[foxglove]"') from None
        self.cfg = cfg
        host, port = parse_host_port(cfg.foxglove)
        self._foxglove = foxglove
        self._context = foxglove.Context()
        try:
            self._server = foxglove.start_server(
                name="perception", host=host, port=port, context=self._context
            )
        except Exception as exc:  # the SDK's own error type for a port in use or a bad address
            raise PerceptionError(f"--foxglove {cfg.foxglove}: {first_line(exc)}") from None
        self.label = f"ws://{host}:{self._server.port}"
        self._channels: list[Any] = []
        print(f"perception: foxglove live on {self.label}", file=sys.stderr)

    def stream(self, name: str, labels: Sequence[str]) -> FoxgloveStreamSink:
        channels = {
            kind: self._foxglove.Channel(
                f"/{name}/{kind}", schema=self._schema(schema), message_encoding="json", context=self._context
            )
            for kind, schema in TOPICS.items()
        }
        self._channels += channels.values()
        return FoxgloveStreamSink(self, name, channels, labels)

    def _schema(self, name: str) -> Any:
        return self._foxglove.Schema(
            name=name, encoding="jsonschema", data=json.dumps(SCHEMAS[name]).encode()
        )

    def wants(self, channel: Any) -> bool:
        return channel.has_sinks()

    def add(self, channel: Any, log_time_ns: int, record: dict[str, Any]) -> None:
        channel.log(record, log_time=log_time_ns)

    def close(self) -> None:
        for channel in self._channels:
            channel.close()
        self._channels = []
        self._server.stop()
