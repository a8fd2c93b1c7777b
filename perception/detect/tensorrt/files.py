"""TensorRT plan files, without TensorRT: cache keys, JSON sidecars, Ultralytics `.engine` headers, and the
checks that refuse a plan built for another GPU or TensorRT version. Pure Python, so it is tested anywhere.

A TensorRT plan only runs on the GPU model (compute capability) and TensorRT version it was built with, and
it bakes in the precision, the input shape and the ONNX graph. All of these form the cache key; its digest
is part of the plan's file name, so a changed ONNX, GPU or TensorRT simply misses the cache and is rebuilt,
and the sidecar lets a plan passed by path be checked before TensorRT is handed foreign bytes.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from perception.core.config import LAYOUTS
from perception.core.errors import PerceptionError

SIDECAR_FORMAT = "perception-tensorrt-plan/1"
PLAN_SUFFIX = ".plan"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class GpuInfo:
    """What a plan is tied to on the machine that runs it."""

    name: str  # e.g. "NVIDIA GeForce RTX 4090"
    compute_capability: str  # e.g. "8.9"
    tensorrt: str  # TensorRT version, e.g. "10.16.1.11"

    def describe(self) -> str:
        return f"{self.name} (compute {self.compute_capability}), TensorRT {self.tensorrt}"


@dataclass(frozen=True)
class PlanKey:
    """Everything a built plan depends on; equal keys mean the cached plan can be used as is."""

    gpu: str
    compute_capability: str
    tensorrt: str
    precision: str  # fp32 | fp16 | int8
    input_shape: tuple[int, int, int, int]  # largest batch, channels, height, width
    onnx_sha256: str

    @classmethod
    def for_model(
        cls, gpu: GpuInfo, precision: str, input_shape: tuple[int, int, int, int], onnx_sha256: str
    ) -> PlanKey:
        return cls(gpu.name, gpu.compute_capability, gpu.tensorrt, precision, tuple(input_shape), onnx_sha256)

    def as_dict(self) -> dict:
        data = asdict(self)
        data["input_shape"] = list(self.input_shape)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> PlanKey:
        names = {f.name for f in fields(cls)}
        if not isinstance(data, dict) or set(data) != names:
            raise ValueError(f"expected the keys {sorted(names)}")
        shape = data["input_shape"]
        if not (isinstance(shape, list) and len(shape) == 4 and all(isinstance(d, int) for d in shape)):
            raise ValueError("input_shape must be 4 integers")
        return cls(**{**data, "input_shape": tuple(shape)})

    def digest(self) -> str:
        """sha256 of the key's canonical JSON: independent of field order, changes with any field."""
        return hashlib.sha256(json.dumps(self.as_dict(), sort_keys=True).encode()).hexdigest()

    def differences(self, other: PlanKey) -> list[str]:
        """Human-readable fields that differ, e.g. `tensorrt 10.0.1 -> 10.16.1.11`."""
        out = []
        for f in fields(self):
            mine, theirs = getattr(self, f.name), getattr(other, f.name)
            if mine != theirs:
                if f.name == "onnx_sha256":
                    out.append("ONNX file changed")
                elif f.name == "input_shape":
                    out.append(f"input {'x'.join(map(str, mine))} -> {'x'.join(map(str, theirs))}")
                else:
                    out.append(f"{f.name.replace('_', ' ')} {mine} -> {theirs}")
        return out


def plan_path(engine_dir: Path, onnx_path: Path, key: PlanKey) -> Path:
    """engines/cache/yolox_nano-448x800-b1-fp16-<digest16>.plan: readable, and unique per key."""
    n, _, h, w = key.input_shape
    return engine_dir / f"{onnx_path.stem}-{h}x{w}-b{n}-{key.precision}-{key.digest()[:16]}{PLAN_SUFFIX}"


def sidecar_path(plan: Path) -> Path:
    return plan.with_name(plan.name + ".json")


@dataclass(frozen=True)
class PlanInfo:
    """A plan's JSON sidecar: its key, and what the runtime needs that the plan itself does not say."""

    key: PlanKey
    plan_sha256: str
    onnx: str  # the ONNX file it was built from, as given at build time
    layout: str  # the output layout the ONNX was recognised as (config.LAYOUTS): a plan keeps it
    class_names: list[str]
    input_name: str
    output_name: str
    calibration: dict | None  # INT8: {"source", "images", "sha256", "cache"}
    built_at: str  # ISO 8601
    build_s: float

    def to_json(self) -> str:
        data = asdict(self)
        data["key"] = self.key.as_dict()
        return json.dumps({"format": SIDECAR_FORMAT, **data}, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> PlanInfo:
        data = json.loads(text)
        if not isinstance(data, dict) or data.pop("format", None) != SIDECAR_FORMAT:
            raise ValueError(f"not a {SIDECAR_FORMAT} sidecar")
        names = {f.name for f in fields(cls)}
        if set(data) != names:
            missing, extra = sorted(names - set(data)), sorted(set(data) - names)
            raise ValueError(f"missing {missing}" if missing else f"unexpected {extra}")
        if data["layout"] not in LAYOUTS:
            raise ValueError(f"unknown layout {data['layout']!r}")
        class_names = data["class_names"]
        if not (isinstance(class_names, list) and all(isinstance(n, str) for n in class_names)):
            raise ValueError("class_names must be a list of names")
        return cls(**{**data, "key": PlanKey.from_dict(data["key"])})


def write_plan(plan: Path, plan_bytes: bytes | memoryview, info: PlanInfo) -> None:
    """Plan first, sidecar last, each through a temporary name: a crash mid-write leaves no sidecar that
    vouches for a partial plan."""
    plan.parent.mkdir(parents=True, exist_ok=True)
    tmp = plan.with_name(plan.name + ".tmp")
    tmp.write_bytes(plan_bytes)
    tmp.replace(plan)
    side = sidecar_path(plan)
    tmp = side.with_name(side.name + ".tmp")
    tmp.write_text(info.to_json())
    tmp.replace(side)


def read_sidecar(plan: Path) -> PlanInfo | None:
    """The plan's sidecar, None when it has none; a sidecar that is there but unreadable is an error."""
    side = sidecar_path(plan)
    if not side.is_file():
        return None
    try:
        return PlanInfo.from_json(side.read_text())
    except (ValueError, TypeError) as exc:
        raise PerceptionError(f"TensorRT plan sidecar {side} is invalid: {exc}") from None


def check_plan(plan: Path, info: PlanInfo, gpu: GpuInfo) -> None:
    """Refuse a plan whose sidecar says it was built elsewhere, or whose bytes are not the ones built."""
    built = info.key
    if (built.gpu, built.compute_capability, built.tensorrt) != (
        gpu.name,
        gpu.compute_capability,
        gpu.tensorrt,
    ):
        raise PerceptionError(
            f"TensorRT plan {plan} was built for {built.gpu} (compute {built.compute_capability}), "
            f"TensorRT {built.tensorrt}; this machine has {gpu.describe()}: rebuild it here with "
            f"`perception build-engine {info.onnx}`"
        )
    if file_sha256(plan) != info.plan_sha256:
        raise PerceptionError(
            f"TensorRT plan {plan} does not match its sidecar (changed after it was built): rebuild it with "
            f"`perception build-engine {info.onnx}`"
        )


def cached_plan(plan: Path, key: PlanKey) -> tuple[PlanInfo | None, str]:
    """Look up the plan for `key`: (info, "") when it can be used, else (None, why it must be built)."""
    if not plan.is_file():
        # Same model, size, batch and precision under another key: say what changed (ONNX, GPU, TensorRT).
        prefix = plan.name[: plan.name.rindex("-") + 1]
        for other in sorted(plan.parent.glob(f"{prefix}*{PLAN_SUFFIX}")):
            try:
                old = read_sidecar(other)
            except PerceptionError:
                continue
            if old is not None:
                return None, f"cached plan {other.name} is stale ({', '.join(old.key.differences(key))})"
        return None, "no cached plan"
    try:
        info = read_sidecar(plan)
    except PerceptionError as exc:
        return None, str(exc)
    if info is None:
        return None, f"cached plan {plan.name} has no sidecar"
    if info.key != key:
        return None, f"cached plan {plan.name} is stale ({', '.join(info.key.differences(key))})"
    if file_sha256(plan) != info.plan_sha256:
        return None, f"cached plan {plan.name} does not match its sidecar"
    return info, ""


def read_engine_header(path: Path) -> tuple[int, dict]:
    """An Ultralytics `.engine` export: a 4-byte little-endian length, that many bytes of JSON metadata
    (names, imgsz, batch, ...), then the plan. Returns (offset of the plan, metadata); (0, {}) for a bare
    plan.

    A bare plan's first 4 bytes read as a length too; it is a header only if the length fits in the file and
    the bytes after it parse as a JSON object, which plan bytes do not.
    """
    size = path.stat().st_size
    with path.open("rb") as f:
        n = int.from_bytes(f.read(4), byteorder="little", signed=True)
        if 0 < n <= size - 4:
            try:
                meta = json.loads(f.read(n).decode("utf-8"))
            except (UnicodeDecodeError, ValueError):
                return 0, {}
            if isinstance(meta, dict):
                return 4 + n, meta
    return 0, {}
