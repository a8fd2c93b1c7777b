"""Monitoring over HTTP (`perception run --serve HOST:PORT`): Prometheus metrics, a health report and a
live page, for every stream of the process. `server.py` holds the API (`Monitor`, `MonitorSink`),
`metrics.py` the Prometheus metrics, `stream.py` each stream's health and live view, `page.py` the page."""

from perception.output.monitor.server import Monitor, MonitorSink

__all__ = ["Monitor", "MonitorSink"]
