"""Where backend auto keeps its choices: one JSON file per key (model bytes, the size it runs at, requests,
precision setting, whether a trial ran, the CPU and the library versions), written atomically so another
process may read it meanwhile; a file that does not parse or holds another key is not used. Any change to
the key is another file: measured again."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from perception.core.errors import first_line
from perception.detect.auto.machine import MachineInfo

SCHEMA = 1


@dataclass
class Choice:
    """What auto chose and the evidence: FPS per candidate, accuracy checks, notes; `cached`: read back."""

    backend: str
    precision: str
    reason: str
    fps: dict[str, float] = field(default_factory=dict)
    checks: dict[str, dict] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    trial_s: float = 0.0
    measured: str = ""
    unchecked: bool = False  # a faster reduced precision could not be checked (no frames): measure again
    cache_file: str = ""
    cached: bool = False

    def as_dict(self) -> dict:
        """What the cache file keeps: all but where it was read from."""
        return {k: v for k, v in asdict(self).items() if k not in ("cache_file", "cached")}


def input_size(model: Path, configured: Sequence[int]) -> tuple[int, int]:
    """The size the model will run at: its own fixed input size, else the configured one. Read quietly (ONNX
    Runtime for ONNX, OpenVINO's IR reader for IR); a file neither reads is the runtimes' to report."""
    dims: list = []
    try:
        if model.suffix.lower() == ".onnx":
            import onnxruntime as ort

            opts = ort.SessionOptions()
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
            opts.log_severity_level = 4
            session = ort.InferenceSession(str(model), opts, providers=["CPUExecutionProvider"])
            dims = list(session.get_inputs()[0].shape)
        else:
            from perception.detect.openvino_ir import model_file, read_model

            shape = read_model(model_file(model)).input(0).get_partial_shape()
            dims = [d.get_length() if d.is_static else None for d in shape] if shape.rank.is_static else []
    except Exception:  # unreadable here: the runtimes will say why when they load it
        dims = []
    if len(dims) == 4 and isinstance(dims[2], int) and isinstance(dims[3], int):
        return dims[2], dims[3]
    return int(configured[0]), int(configured[1])


def file_digest(path: Path) -> str:
    """sha256 over a model's bytes: the file, or every file of an IR folder (.xml, .bin)."""
    files = [path] if path.is_file() else sorted(p for p in path.iterdir() if p.suffix in (".xml", ".bin"))
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode())
        with f.open("rb") as stream:
            for block in iter(lambda s=stream: s.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def cache_dir(cfg_dir: str) -> Path:
    if cfg_dir:
        return Path(cfg_dir).expanduser()
    if os.environ.get("PERCEPTION_CACHE_DIR"):
        return Path(os.environ["PERCEPTION_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "perception"


def choice_key(
    model: Path, input_hw: Sequence[int], requests: int, precision: str, trial: bool, machine: MachineInfo
) -> dict:
    key = {
        "schema": SCHEMA,
        "model": model.name,
        "model_sha256": file_digest(model),
        "input_hw": list(input_hw),
        "requests": requests,
        "precision": precision,
        "trial": trial,
        "machine": machine.as_dict(),
    }
    return json.loads(json.dumps(key))  # as it reads back from the cache file (tuples become lists)


def cache_file(directory: Path, key: dict) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()
    return directory / "backend" / f"{Path(key['model']).stem}-{digest[:16]}.json"


def read_cached(path: Path, key: dict) -> Choice | None:
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("key") != key:
        return None
    try:
        choice = Choice(**record["choice"])
    except (KeyError, TypeError):
        return None
    choice.cached, choice.cache_file = True, str(path)
    return choice


def write_cached(path: Path, key: dict, choice: Choice) -> str:
    """Write atomically (another process may read it meanwhile); "" when written, else why not."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=path.parent, suffix=".tmp", delete=False) as tmp:
            json.dump({"key": key, "choice": choice.as_dict()}, tmp, indent=1)
        os.replace(tmp.name, path)
    except OSError as exc:
        return first_line(exc)
    return ""
