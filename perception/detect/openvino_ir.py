"""Reading an OpenVINO model: the file in an exported folder, and an IR read by the IR frontend alone.
Shared by the runtime (openvino.py), the INT8 check (quantized.py) and the auto choice's cache key."""

from __future__ import annotations

from pathlib import Path

import openvino as ov
from openvino.frontend import FrontEndManager

from perception.core.errors import PerceptionError


def model_file(path: Path) -> Path:
    """The file OpenVINO reads: the path itself, or the one `.xml` in an exported folder."""
    if not path.exists():
        raise PerceptionError(f"model not found: {path}")
    if not path.is_dir():
        return path
    xmls = sorted(path.glob("*.xml"))
    if len(xmls) != 1:
        found = ", ".join(p.name for p in xmls) if xmls else "none"
        raise PerceptionError(f"model {path}: expected one OpenVINO .xml in the folder, found {found}")
    return xmls[0]


def read_model(source: Path | str) -> ov.Model:
    """OpenVINO's model from a file. An IR (`.xml`) is read by the IR frontend alone: `Core.read_model` hands
    a file it cannot parse to every frontend in turn, and TensorFlow's prints its own parse errors (several
    lines) on stderr before the one-line error."""
    if Path(source).suffix.lower() == ".xml":
        frontend = FrontEndManager().load_by_framework("ir")
        return frontend.convert(frontend.load(str(source)))
    return ov.Core().read_model(str(source))
