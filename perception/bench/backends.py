"""`perception bench --compare backends`: the pipeline on every runtime and precision backend auto weighs for
this model on this CPU, beside the pipeline on auto's choice, in the same rounds: whether auto picked well.

Each variant is a mode named `pipeline:<backend>-<precision>`; the ones a user gets from a plain
`--backend onnxruntime` (fp32) and a plain `--backend openvino` (OpenVINO's default precision for this CPU)
are marked `plain`, and `checks` gives auto's pipeline FPS over the faster of those two, round by round.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from perception.core.config import Config
from perception.detect import Detector, _create
from perception.detect.auto.choose import candidates, model_kind, openvino_default_precision
from perception.detect.auto.machine import machine_info

PREFIX = "pipeline:"


@dataclass
class Variant:
    backend: str
    precision: str
    plain: bool  # what a plain --backend <this runtime> runs
    detector: Detector

    def describe(self) -> dict[str, Any]:
        return {"backend": self.backend, "precision": self.precision, "plain": self.plain}


def backend_variants(model: str | Path, cfg: Config, requests: int) -> dict[str, Variant]:
    """One loaded detector per candidate, set up for `requests` like the pipeline's own."""
    plain = {"onnxruntime": "fp32", "openvino": openvino_default_precision(cfg.detector.openvino_device)}
    out = {}
    for c in candidates(model_kind(Path(model)), machine_info(), cfg.detector.precision):
        det = cfg.detector.model_copy(update={"backend": c.backend, "precision": c.precision})
        detector = _create(model, cfg.model_copy(update={"detector": det}), requests)
        out[f"{PREFIX}{c.backend}-{c.precision}"] = Variant(
            c.backend, c.precision, plain.get(c.backend) == c.precision, detector
        )
    return out


def auto_checks(bench: dict[str, Any]) -> dict[str, float]:
    """Auto's pipeline FPS over the faster plain runtime's, of the medians and as the median of rounds."""
    modes, described = bench["modes"], bench["detector"].get("backend_modes") or {}
    plain = [name for name, v in described.items() if v["plain"] and name in modes]
    if not plain:
        return {}
    pipe = modes["pipeline"]
    best = max(modes[name]["fps_median"] for name in plain)
    out = {"fps_ratio_auto_vs_best_plain": pipe["fps_median"] / best if best > 0 else float("nan")}
    rounds = list(zip(pipe["fps_runs"], *(modes[name]["fps_runs"] for name in plain), strict=False))
    ratios = [r[0] / max(r[1:]) for r in rounds if max(r[1:]) > 0]
    if len(ratios) > 1:
        out["fps_ratio_auto_vs_best_plain_round_median"] = float(np.median(ratios))
    return out
