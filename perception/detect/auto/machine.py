"""What this machine is, as far as choosing a CPU runtime goes: the CPU's name and the instruction-set
features that decide which precision runs fast (AMX and AVX-512 BF16/FP16, VNNI for INT8), the core count
and the runtime versions. Read from /proc/cpuinfo and the installed packages, never assumed: machines of
one kind differ (an AMD EPYC with AVX-512 BF16 but no AMX, an Intel Xeon with AMX)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path

# CPU flags (Linux /proc/cpuinfo names) that change which runtime and precision is fastest.
RELEVANT_FLAGS = (
    "avx2",
    "fma",
    "avx512f",
    "avx512_vnni",
    "avx_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "amx_tile",
    "amx_bf16",
    "amx_int8",
    "amx_fp16",
)
# Packages whose version changes what a trial measured (a new runtime may change the ranking).
VERSIONED = ("perception", "numpy", "opencv-python", "onnxruntime", "openvino")


@dataclass(frozen=True)
class MachineInfo:
    cpu: str  # the model name, e.g. "AMD EPYC" or "Intel(R) Xeon(R) Platinum 8488C"
    cpu_count: int
    flags: tuple[str, ...]  # the RELEVANT_FLAGS this CPU has
    versions: dict[str, str] = field(default_factory=dict)

    @property
    def bf16(self) -> bool:
        """Native bf16 arithmetic: OpenVINO runs bf16 fast (and picks it by default) on these CPUs."""
        return bool({"avx512_bf16", "amx_bf16"} & set(self.flags))

    @property
    def fp16(self) -> bool:
        return bool({"avx512_fp16", "amx_fp16"} & set(self.flags))

    @property
    def amx(self) -> bool:
        """Matrix units (Intel Sapphire Rapids and later): bf16 and int8 several times faster than fp32."""
        return "amx_bf16" in self.flags

    def describe(self) -> str:
        shown = [
            f
            for f in ("amx_bf16", "amx_int8", "avx512_bf16", "avx512_fp16", "avx512_vnni")
            if f in self.flags
        ]
        return f"{self.cpu}, {self.cpu_count} cores, {' '.join(shown) or 'no bf16/int8 matrix features'}"

    def as_dict(self) -> dict:
        return asdict(self)

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.as_dict(), sort_keys=True).encode()).hexdigest()


def _cpuinfo() -> tuple[str, set[str]]:
    name, flags = platform.processor() or platform.machine(), set()
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return name, flags
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and name in ("", platform.machine(), platform.processor()):
            name = value.strip()
        elif key in ("flags", "Features") and not flags:
            flags = set(value.split())
    return name, flags


def package_versions(names: tuple[str, ...]) -> dict[str, str]:
    """Python's version and each installed package's of `names` (a missing one is left out)."""
    out = {"python": platform.python_version()}
    for name in names:
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[name] = metadata.version(name)
    return out


_MACHINE: MachineInfo | None = None


def machine_info() -> MachineInfo:
    """This machine (read once per process)."""
    global _MACHINE
    if _MACHINE is None:
        name, flags = _cpuinfo()
        _MACHINE = MachineInfo(
            cpu=name,
            cpu_count=os.cpu_count() or 1,
            flags=tuple(f for f in RELEVANT_FLAGS if f in flags),
            versions=package_versions(VERSIONED),
        )
    return _MACHINE
