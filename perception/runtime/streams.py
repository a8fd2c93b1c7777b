"""Which streams a run has: the sources on the command line, or a streams file, each with its name.

A streams file (`perception run --streams FILE.yaml`) lists one entry per stream:

    streams:
      - source: rtsp://10.0.0.5/front        # required: anything `perception run` takes as a source
        name: front                          # optional: output folder OUT/<name>/ (default: from the source)
        camera: dashcam                      # optional: camera profile (configs/cameras/ or a path)
        mode: realtime                       # optional, files only: fast | realtime
        fps: 10                              # optional, image folders only

Names are the source's file stem (or folder name, camera index, URL path), made unique with -2, -3, ...
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from perception.core.errors import PerceptionError
from perception.core.yaml_file import read_mapping, validation_message

_STREAM_PREFIX = re.compile(r"^[a-z][a-z0-9+.-]*://", re.IGNORECASE)


@dataclass(frozen=True)
class StreamSpec:
    name: str
    source: str
    camera: str | None = None  # camera profile, None: the config's
    mode: Literal["fast", "realtime"] | None = None  # None: the config's
    fps: float | None = None


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    source: Annotated[str, Field(min_length=1)]
    name: Annotated[str, Field(min_length=1, max_length=100)] | None = None
    camera: Annotated[str, Field(min_length=1)] | None = None
    mode: Literal["fast", "realtime"] | None = None
    fps: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = None


class _File(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    streams: Annotated[list[_Entry], Field(min_length=1)]


def stream_name(spec: str) -> str:
    """A folder-safe name for a source: the file's stem, an image folder's name (a MOTChallenge `img1/` takes
    its sequence's), `camera0`, or a stream's last path part (else its host)."""
    if spec.isdigit():
        return f"camera{spec}"
    if _STREAM_PREFIX.match(spec):
        rest = spec.split("://", 1)[1].split("?", 1)[0].rstrip("/")
        host, _, path = rest.partition("/")
        name = Path(path).stem if path else host.rsplit("@", 1)[-1].split(":", 1)[0]
    else:
        path = Path(spec)
        name = path.resolve().parent.name if path.name == "img1" else path.stem or path.resolve().name
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "run"
    return name[:80]


def _unique(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name}-{seen[name]}")
    if len(set(out)) != len(out):  # a -2 suffix that a user's own name already had
        raise PerceptionError(f"stream names are not unique: {', '.join(out)}")
    return out


def read_streams_file(path: Path) -> list[StreamSpec]:
    data = read_mapping(path, "streams file")
    try:
        parsed = _File.model_validate_json(json.dumps(data, default=str), strict=True)
    except ValidationError as exc:
        raise PerceptionError(f"streams file {path}: {validation_message(exc, 'stream')}") from None
    names = _unique([e.name or stream_name(e.source) for e in parsed.streams])
    entries = zip(names, parsed.streams, strict=True)
    return [StreamSpec(n, e.source, e.camera, e.mode, e.fps) for n, e in entries]


def stream_specs(sources: list[str], streams_file: Path | None, fps: float | None) -> list[StreamSpec]:
    """The run's streams, from the command line's sources or a streams file (not both)."""
    if streams_file is not None:
        if sources:
            raise PerceptionError("give sources on the command line or --streams FILE, not both")
        return read_streams_file(streams_file)
    if not sources:
        raise PerceptionError("no source: give one or more sources, or --streams FILE")
    names = _unique([stream_name(s) for s in sources])
    return [StreamSpec(n, s, fps=fps) for n, s in zip(names, sources, strict=True)]
