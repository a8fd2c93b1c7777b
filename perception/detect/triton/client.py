"""Talking to an NVIDIA Triton Inference Server: the URL, one client over gRPC or HTTP (tritonclient), the
model the server describes, and which failures mean "the server is not there" (retry) rather than "this
request is wrong" (stop). The detector built on it is perception/detect/triton/backend.py.
"""

from __future__ import annotations

import contextlib
import json
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from perception.core.errors import PerceptionError
from perception.detect.triton.repo import PARAM_CLASS_NAMES, PARAM_LAYOUT

DEFAULT_PORTS = {"grpc": 8001, "http": 8000}
NUMPY_TYPES = {"TYPE_FP32": np.float32, "TYPE_FP16": np.float16}
# gRPC codes of a server that is down, restarting, overloaded or still loading the model: worth retrying.
RETRY_GRPC_CODES = {
    "UNAVAILABLE",
    "DEADLINE_EXCEEDED",
    "CANCELLED",
    "ABORTED",
    "RESOURCE_EXHAUSTED",
    "NOT_FOUND",
}
RETRY_HTTP_CODES = {"404", "408", "429", "500", "502", "503", "504"}


@dataclass(frozen=True)
class TritonUrl:
    protocol: str  # grpc | http
    address: str  # host:port, as tritonclient takes it
    ssl: bool
    text: str  # as configured, for messages

    @classmethod
    def parse(cls, url: str) -> TritonUrl:
        match = re.fullmatch(r"(grpc|http)(s?)://(\[[0-9A-Fa-f:.]+\]|[^/:\s\[\]]+)(?::(\d{1,5}))?/?", url)
        if not match:
            raise PerceptionError(
                f"detector.triton_url {url!r}: expected grpc://HOST:PORT or http://HOST:PORT"
            )
        protocol, tls, host, port = match.groups()
        return cls(protocol, f"{host}:{port or DEFAULT_PORTS[protocol]}", bool(tls), url.rstrip("/"))


@dataclass(frozen=True)
class ServedModel:
    """What the server's model config says, as the detector needs it."""

    max_batch_size: int
    input_name: str
    input_type: str  # TYPE_FP32 | TYPE_FP16
    input_hw: tuple[int, int] | None  # None: dynamic, the detector picks the size
    output_name: str
    layout: str | None  # from the config's parameters (perception triton-repo), else None
    class_names: list[str] | None

    @classmethod
    def from_config(cls, config: dict[str, Any], where: str) -> ServedModel:
        """Triton's model config as JSON (gRPC's int64 fields arrive as strings, hence int())."""
        try:
            max_batch = int(config.get("max_batch_size", 0))
            inp, out = config["input"][0], config["output"][0]
            dims = [int(d) for d in inp["dims"]]
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise PerceptionError(f"{where}: unreadable model config ({exc})") from None
        image_dims = dims if max_batch > 0 else dims[1:]
        if len(image_dims) != 3 or image_dims[0] != 3:
            raise PerceptionError(f"{where}: input {inp['name']} {dims} is not a 3 x H x W image")
        data_type = inp.get("data_type", "TYPE_FP32")
        if data_type not in NUMPY_TYPES:
            raise PerceptionError(f"{where}: input type {data_type}, expected TYPE_FP32 or TYPE_FP16")
        h, w = image_dims[1:]
        params = {k: v.get("string_value", "") for k, v in (config.get("parameters") or {}).items()}
        names = None
        if params.get(PARAM_CLASS_NAMES):
            try:
                names = [str(n) for n in json.loads(params[PARAM_CLASS_NAMES])]
            except (ValueError, TypeError):
                raise PerceptionError(f"{where}: parameter {PARAM_CLASS_NAMES} is not a JSON list") from None
        return cls(
            max_batch_size=max_batch,
            input_name=inp["name"],
            input_type=data_type,
            input_hw=(h, w) if h > 0 and w > 0 else None,
            output_name=out["name"],
            layout=params.get(PARAM_LAYOUT) or None,
            class_names=names,
        )


def retryable(exc: BaseException) -> bool:
    """True for failures of the connection or of a server that is (re)starting: worth a reconnect."""
    from tritonclient.utils import InferenceServerException

    if isinstance(exc, InferenceServerException):
        status = str(exc.status() or "").removeprefix("StatusCode.")
        return status in RETRY_GRPC_CODES or status in RETRY_HTTP_CODES
    if isinstance(exc, OSError):  # refused, reset, unreachable, socket timeouts
        return True
    # geventhttpclient's closed connection and gevent's timeout (a BaseException) for HTTP
    return type(exc).__name__ in ("HTTPConnectionClosed", "HTTPParseError", "Timeout")


class TritonClient:
    """One connection (tritonclient's clients are not thread-safe: one per request thread), every call
    bounded by `timeout_s`."""

    def __init__(self, url: TritonUrl, timeout_s: float) -> None:
        self.url = url
        try:
            if url.protocol == "grpc":
                import tritonclient.grpc as module
            else:
                import tritonclient.http as module
        except ImportError:
            raise PerceptionError(
                'the triton backend needs tritonclient: pip install -e ".[triton]"'
            ) from None
        self._module = module
        if url.protocol == "grpc":
            keepalive = module.KeepAliveOptions()
            channel_args = [  # tritonclient's defaults, plus a subchannel of this channel's own
                ("grpc.max_send_message_length", module.MAX_GRPC_MESSAGE_SIZE),
                ("grpc.max_receive_message_length", module.MAX_GRPC_MESSAGE_SIZE),
                ("grpc.keepalive_time_ms", keepalive.keepalive_time_ms),
                ("grpc.keepalive_timeout_ms", keepalive.keepalive_timeout_ms),
                ("grpc.keepalive_permit_without_calls", keepalive.keepalive_permit_without_calls),
                ("grpc.http2.max_pings_without_data", keepalive.http2_max_pings_without_data),
                # gRPC shares connections among channels to one address, with their reconnect backoff (up
                # to 2 minutes): a new client after an outage would inherit "refused" from the old one.
                ("grpc.use_local_subchannel_pool", 1),
            ]
            self._client = module.InferenceServerClient(url.address, ssl=url.ssl, channel_args=channel_args)
            self._timeout = {"client_timeout": timeout_s}
        else:
            self._client = module.InferenceServerClient(
                url.address, ssl=url.ssl, connection_timeout=timeout_s, network_timeout=timeout_s
            )
            self._timeout = {}

    def model_ready(self, model: str) -> bool:
        return bool(self._client.is_model_ready(model, **self._timeout))

    def model_config(self, model: str) -> dict[str, Any]:
        if self.url.protocol == "grpc":
            return self._client.get_model_config(model, as_json=True, **self._timeout)["config"]
        return self._client.get_model_config(model)

    def model_names(self) -> list[str]:
        if self.url.protocol == "grpc":
            index = self._client.get_model_repository_index(as_json=True, **self._timeout).get("models", [])
        else:
            index = self._client.get_model_repository_index()
        return sorted({m["name"] for m in index})

    def infer(self, model: str, served: ServedModel, tensor: np.ndarray) -> np.ndarray:
        """One request; `tensor` is (1, 3, H, W) of the served input type."""
        datatype = served.input_type.removeprefix("TYPE_")
        inp = self._module.InferInput(served.input_name, list(tensor.shape), datatype)
        if self.url.protocol == "grpc":
            inp.set_data_from_numpy(tensor)
            out = self._module.InferRequestedOutput(served.output_name)
            result = self._client.infer(model, [inp], outputs=[out], **self._timeout)
        else:
            inp.set_data_from_numpy(tensor, binary_data=True)
            out = self._module.InferRequestedOutput(served.output_name, binary_data=True)
            result = self._client.infer(model, [inp], outputs=[out])
        raw = result.as_numpy(served.output_name)
        if raw is None:
            raise PerceptionError(
                f"Triton server {self.url.text}: no output {served.output_name!r} in the reply"
            )
        return raw

    def close(self) -> None:
        # Closing a connection to a server that is gone may fail; there is nothing to keep.
        with contextlib.suppress(Exception):
            self._client.close()
