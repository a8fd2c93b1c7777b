"""Triton backend: inference on an NVIDIA Triton Inference Server, letterbox and decoding here.

Many pipelines, on many machines, share one GPU server, and Triton's dynamic batcher runs their
single-frame requests together. Only the raw tensor crosses the network: letterbox and the layout's decode
(the shared backend skeleton) stay local, as for the other raw-head backends, and the layout, class names
and input size come from the server's model config (the `parameters` and dims `perception triton-repo`
writes).

A server that goes away is handled with the stream sources' policy (perception/sources/live.py): at start
`source.connect_attempts` tries with backoff, then a one-line error; mid-run, reconnect attempts spaced by
`backoff_delay_s` (source.backoff_*), `source.reconnect_attempts` of them or forever, each state change
reported through `on_health(state, fields)`: `unavailable` (reason), `reconnecting` (attempt, delay_s),
`recovered` (attempts, outage_s), `gave_up`. Meanwhile, by `outage_policy`:
- `wait` (replays: every frame matters): detect() blocks until the server is back, then detects the frame;
- `drop` (live sources: old frames are worthless): detect() raises DetectorUnavailable at once for each
  frame until an attempt, when due, finds the server again; the pipeline counts the frame and goes on.
Giving up raises PerceptionError (the run ends with one line); `interrupt()` ends any wait at once.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from perception.core.config import Config, SourceConfig
from perception.core.errors import DetectorUnavailable, PerceptionError, first_line
from perception.detect.backend import HeadDetector, LoadedModel
from perception.detect.triton.client import (
    NUMPY_TYPES,
    ServedModel,
    TritonClient,
    TritonUrl,
    retryable,
)
from perception.detect.triton.repo import model_name
from perception.sources.live import backoff_delay_s

HealthCallback = Callable[[str, dict[str, Any]], None]  # (state, fields), called from a detect thread


class ServerLink:
    """The connection state every handle (fork) of one detector shares: up, or down since when, the next
    reconnect attempt, and the health events. `generation` counts recoveries, so each handle replaces a
    client that dates from before an outage (a fresh connection, not gRPC's own slow reconnect backoff)."""

    def __init__(self, url: TritonUrl, model: str, served: ServedModel, timeout_s: float, cfg: SourceConfig):
        self.url, self.model, self.served, self.timeout_s, self.cfg = url, model, served, timeout_s, cfg
        self.on_health: HealthCallback | None = None
        self.policy = "wait"
        self.generation = 0
        self._lock = threading.Lock()
        self._interrupted = threading.Event()
        self._rng = random.Random()
        self._down_since_ns: int | None = None
        self._attempts = 0
        self._next_attempt_ns = 0
        self._gave_up: str | None = None

    def _health(self, state: str, **fields: Any) -> None:
        if self.on_health is not None:
            detector = f"{self.url.text} {self.model}"
            self.on_health(state, {"detector": detector, "at_ns": time.monotonic_ns(), **fields})

    def _outage_s(self) -> float:
        return round((time.monotonic_ns() - (self._down_since_ns or time.monotonic_ns())) / 1e9, 3)

    def _schedule(self, reason: str) -> None:
        """The next attempt, after the backoff delay; `reason`: why the server is not usable now."""
        self._attempts += 1
        delay_s = backoff_delay_s(self._attempts, self.cfg, self._rng)
        self._next_attempt_ns = time.monotonic_ns() + int(delay_s * 1e9)
        limit = self.cfg.reconnect_attempts
        self._health(
            "reconnecting",
            attempt=self._attempts,
            max_attempts=limit,
            delay_s=round(delay_s, 3),
            reason=reason,
        )

    def lost(self, generation: int, exc: BaseException) -> None:
        """A request of `generation` failed as if the server were gone: the first to say so starts it."""
        with self._lock:
            if generation != self.generation or self._down_since_ns is not None:
                return
            self._down_since_ns = time.monotonic_ns()
            self._attempts = 0
            self._health("unavailable", reason=first_line(exc))
            self._schedule(first_line(exc))

    def usable(self) -> int:
        """The generation to send requests with once the server is up; per policy, waits for it or raises
        DetectorUnavailable (this frame is dropped). PerceptionError once the attempts are spent."""
        with self._lock:
            while self._down_since_ns is not None:
                if self._gave_up:
                    raise PerceptionError(self._gave_up)
                if self._interrupted.is_set():
                    raise DetectorUnavailable(f"Triton server {self.url.text} unavailable: stopped waiting")
                wait_s = (self._next_attempt_ns - time.monotonic_ns()) / 1e9
                if wait_s > 0:
                    if self.policy == "drop":
                        raise DetectorUnavailable(
                            f"Triton server {self.url.text} unavailable (reconnect attempt {self._attempts} "
                            f"in {wait_s:.1f} s): frame dropped"
                        )
                    self._interrupted.wait(wait_s)
                    continue
                reason = self._probe()
                if reason is None:
                    self._health("recovered", attempts=self._attempts, outage_s=self._outage_s())
                    self._down_since_ns = None
                    self.generation += 1
                    break
                limit = self.cfg.reconnect_attempts
                if limit != "forever" and self._attempts >= limit:
                    self._health("gave_up", attempts=self._attempts, outage_s=self._outage_s())
                    self._gave_up = (
                        f"Triton server {self.url.text} unavailable: gave up after {self._attempts} "
                        f"reconnect attempt{'s' * (self._attempts > 1)} ({reason})"
                    )
                    raise PerceptionError(self._gave_up)
                self._schedule(reason)
                if self.policy == "drop":
                    raise DetectorUnavailable(
                        f"Triton server {self.url.text} unavailable ({reason}): frame dropped"
                    )
            return self.generation

    def _probe(self) -> str | None:
        """One reconnect attempt on a fresh connection: None when the model is ready and unchanged, else why
        not. A model that came back different (another input or layout) cannot be decoded: that is fatal."""
        client = TritonClient(self.url, self.timeout_s)
        try:
            if not client.model_ready(self.model):
                return f"model {self.model} not ready"
            served = ServedModel.from_config(client.model_config(self.model), self.describe())
        except Exception as exc:
            if retryable(exc):
                return first_line(exc)
            raise
        finally:
            client.close()
        if served != self.served:
            self._gave_up = f"{self.describe()} came back changed: {served} instead of {self.served}"
            raise PerceptionError(self._gave_up)
        return None

    def describe(self) -> str:
        return f"Triton server {self.url.text}, model {self.model}"

    def interrupt(self) -> None:
        self._interrupted.set()


def connect(url: TritonUrl, model: str, timeout_s: float, cfg: SourceConfig) -> ServedModel:
    """Read the model's config at start, `connect_attempts` tries with backoff; a one-line error after."""
    rng = random.Random()
    reason = ""
    for attempt in range(1, cfg.connect_attempts + 1):
        if attempt > 1:
            time.sleep(backoff_delay_s(attempt - 1, cfg, rng))
        client = TritonClient(url, timeout_s)
        try:
            if client.model_ready(model):
                return ServedModel.from_config(
                    client.model_config(model), f"Triton server {url.text}, {model}"
                )
            names = client.model_names()
            if model not in names:
                served = ", ".join(names) or "none"
                raise PerceptionError(
                    f"Triton server {url.text} has no model {model!r} (it serves: {served})"
                )
            reason = f"model {model} not ready"
        except PerceptionError:
            raise
        except Exception as exc:
            if not retryable(exc):
                raise PerceptionError(f"Triton server {url.text}: {first_line(exc)}") from None
            reason = first_line(exc)
        finally:
            client.close()
    tries = cfg.connect_attempts
    raise PerceptionError(
        f"cannot reach Triton server {url.text} (model {model}): no answer after {tries} "
        f"attempt{'s' * (tries > 1)} (timeout {timeout_s:g} s each): {reason}"
    )


class TritonDetector(HeadDetector):
    """A raw-head YOLO model served by Triton; `model_path`'s stem names the model unless
    `detector.triton_model` does. Only `_load` and `_run` are Triton's: the skeleton letterboxes, decodes
    and times as for every other runtime."""

    backend = "triton"

    def _load(self, path: Path, cfg: Config) -> LoadedModel:
        det = cfg.detector
        self.model = det.triton_model or model_name(path)
        url = TritonUrl.parse(det.triton_url)
        served = connect(url, self.model, det.triton_timeout_s, cfg.source)
        self._link = ServerLink(url, self.model, served, det.triton_timeout_s, cfg.source)
        self._dtype = NUMPY_TYPES[served.input_type]
        meta = {"names": list(served.class_names)} if served.class_names is not None else {}
        return LoadedModel(served.input_hw or tuple(det.input_size), meta, layout=served.layout)

    # -- the pipeline's hooks ---------------------------------------------------------------------------
    @property
    def on_health(self) -> HealthCallback | None:
        return self._link.on_health

    @on_health.setter
    def on_health(self, callback: HealthCallback | None) -> None:
        self._link.on_health = callback

    @property
    def outage_policy(self) -> str:
        return self._link.policy

    @outage_policy.setter
    def outage_policy(self, policy: str) -> None:
        if policy not in ("wait", "drop"):
            raise ValueError(f"outage_policy {policy!r}: wait or drop")
        self._link.policy = policy

    def interrupt(self) -> None:
        """End a wait for the server at once (pipeline stopping); safe from any thread."""
        self._link.interrupt()

    # -- inference --------------------------------------------------------------------------------------
    def _new_request(self) -> None:
        self._client, self._client_owner = None, (-1, 0)  # a fork's own connection, made on first use

    def _release(self) -> None:
        client = getattr(self, "_client", None)
        if client is not None:
            client.close()
            self._client = None

    def _run(self, tensor: np.ndarray) -> np.ndarray:
        """One inference, through outages by the link's policy."""
        if self._dtype is not np.float32:
            tensor = tensor.astype(self._dtype)
        link = self._link
        while True:
            generation = link.usable()
            # A connection per thread (the HTTP client's gevent sockets belong to the thread that made them)
            # and per recovery (a fresh one after an outage).
            owner = (generation, threading.get_ident())
            if self._client is None or self._client_owner != owner:
                self._release()
                self._client, self._client_owner = TritonClient(link.url, link.timeout_s), owner
            try:
                raw = self._client.infer(self.model, link.served, tensor)
            except PerceptionError:
                raise
            except Exception as exc:
                if not retryable(exc):
                    raise PerceptionError(f"{link.describe()}: inference failed: {first_line(exc)}") from None
                link.lost(generation, exc)
                continue
            return raw.astype(np.float32, copy=False)
