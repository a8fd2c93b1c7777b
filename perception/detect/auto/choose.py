"""`detector.backend: auto` on a CPU: which runtime and precision run this model fastest on this machine,
measured rather than assumed.

At first use a short trial times every candidate (ONNX Runtime fp32; OpenVINO f32, and bf16 / fp16 where the
CPU computes in them; a quantized model as it is, on each runtime that reads it) with the requests the caller
will run, in interleaved rounds so a busy machine slows them alike, and keeps the fastest. Reduced precision
must also pass the accuracy check (perception/detect/auto/accuracy.py: recall within one point of fp32 on real
frames) and be clearly faster than fp32; a candidate that fails is skipped and said so. The choice is
cached per model (its bytes), input size, requests, CPU (model, core count, features) and library versions:
any change is a new key, so it is measured again. Without the trial (`detector.auto_trial: false`) CPU
features decide. What was chosen, and why, is said once on stderr.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from perception.core.config import Config
from perception.core.errors import PerceptionError, first_line
from perception.detect.auto.accuracy import CheckFrame, RecallCheck, check_recall, load_frames
from perception.detect.auto.choice_cache import (
    Choice,
    cache_dir,
    cache_file,
    choice_key,
    input_size,
    read_cached,
    write_cached,
)
from perception.detect.auto.machine import MachineInfo, machine_info
from perception.detect.quantized import require_quantized

TRIAL_ROUNDS = 3
ROUND_S = 0.3  # per candidate per round: ~1 s of timing per candidate in all
MIN_ROUND_FRAMES = 3
CHECK_FRAMES = 24  # frames for the accuracy check of reduced precision
REDUCED_MIN_GAIN = 1.03  # reduced precision must beat the best fp32 by this much to be worth its loss


@dataclass(frozen=True)
class Candidate:
    backend: str  # onnxruntime | openvino
    precision: str  # fp32 | bf16 | fp16: of the arithmetic (a quantized model's other layers)

    @property
    def name(self) -> str:
        return f"{self.backend} {self.precision}"

    @property
    def reduced(self) -> bool:
        return self.precision != "fp32"


def trial_enabled(configured: bool) -> bool:
    """`detector.auto_trial`, unless PERCEPTION_AUTO_TRIAL=0 turns the trial off for this environment (test
    suites and CI, whose results must not depend on a timing race)."""
    setting = os.environ.get("PERCEPTION_AUTO_TRIAL", "1").strip().lower()
    return configured and setting not in ("0", "false", "no")


def openvino_default_precision(device: str = "CPU") -> str:
    """The precision OpenVINO computes in when not told (bf16 on CPUs with AVX-512 BF16 or AMX): what a plain
    `--backend openvino` runs."""
    import openvino as ov

    hint = ov.Core().get_property(device, "INFERENCE_PRECISION_HINT")  # an ov.Type: bf16, f16, f32
    name = hint.get_type_name() if hasattr(hint, "get_type_name") else str(hint)
    return {"bf16": "bf16", "f16": "fp16"}.get(name, "fp32")


def model_kind(path: Path) -> str:
    """The model's format: onnx, or ir (OpenVINO XML, or a folder holding one)."""
    if path.suffix.lower() == ".onnx":
        return "onnx"
    if path.suffix.lower() == ".xml" or (path.is_dir() and any(path.glob("*.xml"))):
        return "ir"
    raise PerceptionError(f"backend auto: cannot tell the format of {path} (expected .onnx or OpenVINO IR)")


def candidates(kind: str, machine: MachineInfo, precision: str) -> list[Candidate]:
    """The runtimes and precisions worth timing for this model on this CPU, in first-guess order."""
    out = [Candidate("onnxruntime", "fp32")] if kind == "onnx" else []
    out.append(Candidate("openvino", "fp32"))
    if machine.bf16:
        out.append(Candidate("openvino", "bf16"))
    if machine.fp16:
        out.append(Candidate("openvino", "fp16"))
    if precision in ("fp32", "bf16", "fp16"):
        out = [c for c in out if c.precision == precision]
        if not out:
            raise PerceptionError(
                f"detector.precision {precision}: this CPU ({machine.describe()}) does not compute in it"
            )
    guess = first_guess(kind, machine, out)
    return [guess] + [c for c in out if c != guess]


def first_guess(kind: str, machine: MachineInfo, available: Sequence[Candidate]) -> Candidate:
    """Without a trial: OpenVINO bf16 where the CPU has matrix units (AMX: bf16 several times faster than
    fp32), else ONNX Runtime fp32 for ONNX (the faster fp32 runtime for these models on the CPUs measured),
    OpenVINO fp32 for its own IR."""
    preferred = [Candidate("openvino", "bf16")] if machine.amx else []
    preferred += [Candidate("onnxruntime", "fp32"), Candidate("openvino", "fp32")]
    for c in preferred:
        if c in available:
            return c
    return available[0]


# ---------------------------------------------------------------- the trial


def _timing_images(frames: Sequence[CheckFrame]) -> list[np.ndarray]:
    if frames:
        return [f.image for f in frames[:8]]
    rng = np.random.default_rng(0)  # no real frames: inference time does not depend on the content
    return [rng.integers(0, 256, (720, 1280, 3), np.uint8)]


def _time_round(lanes: Sequence, images: Sequence[np.ndarray], seconds: float) -> float:
    """FPS of the lanes (one per request, each on a thread) running detect() for about `seconds`."""
    done = [0] * len(lanes)
    stop_at = time.monotonic() + seconds

    def work(i: int) -> None:
        n = 0
        while n < MIN_ROUND_FRAMES or time.monotonic() < stop_at:
            lanes[i].detect(images[(n * len(lanes) + i) % len(images)])
            n += 1
        done[i] = n

    t0 = time.monotonic()
    threads = [threading.Thread(target=work, args=(i,)) for i in range(1, len(lanes))]
    for t in threads:
        t.start()
    work(0)
    for t in threads:
        t.join()
    return sum(done) / (time.monotonic() - t0)


def run_trial(detectors: dict[Candidate, object], images: Sequence[np.ndarray]) -> dict[Candidate, float]:
    """Median FPS per candidate over interleaved rounds (the order rotates each round)."""
    lanes = {c: [d] + [d.fork() for _ in range(d.requests - 1)] for c, d in detectors.items()}
    for c in lanes:
        for lane in lanes[c]:
            lane.detect(images[0])  # warm: first runs pay for lazy initialisation
    order = list(lanes)
    fps: dict[Candidate, list[float]] = {c: [] for c in order}
    for r in range(TRIAL_ROUNDS):
        shift = r % len(order)
        for c in order[shift:] + order[:shift]:
            fps[c].append(_time_round(lanes[c], images, ROUND_S))
    return {c: float(np.median(v)) for c, v in fps.items()}


def _load(model: Path, cfg: Config, requests: int, c: Candidate, create: Callable) -> object:
    det = cfg.detector.model_copy(update={"backend": c.backend, "precision": c.precision})
    return create(model, cfg.model_copy(update={"detector": det}), requests)


def decide(
    fps: dict[Candidate, float],
    check: Callable[[Candidate], RecallCheck | None],
) -> tuple[Candidate, str, dict[str, dict], list[str], bool]:
    """The fastest fp32 candidate, unless a reduced-precision one is clearly faster and passes the accuracy
    check. Returns (choice, reason, checks, notes, unchecked)."""
    fp32 = [c for c in fps if not c.reduced]
    best32 = max(fp32, key=fps.__getitem__)
    checks: dict[str, dict] = {}
    notes: list[str] = []
    unchecked = False
    fastest = max(fps, key=fps.__getitem__)
    for c in sorted(fps, key=fps.__getitem__, reverse=True):
        if not c.reduced:
            return c, "fastest" if c == fastest else "fastest fp32", checks, notes, unchecked
        if fps[c] < fps[best32] * REDUCED_MIN_GAIN:
            notes.append(
                f"{c.name} not worth its precision loss ({fps[c]:.1f} vs {fps[best32]:.1f} FPS fp32)"
            )
            continue
        result = check(c)
        if result is None:
            notes.append(
                f"{c.name} is faster but unchecked for accuracy (no real frames: set detector.auto_frames)"
            )
            unchecked = True
            continue
        checks[c.name] = result.as_dict()
        if result.passed:
            return c, f"fastest, accuracy check passed ({result.describe()})", checks, notes, unchecked
        notes.append(f"{c.name} is faster but fails the accuracy check: {result.describe()}; falling back")
    return best32, "fastest fp32", checks, notes, unchecked


def _say(text: str) -> None:
    print(f"perception: {text}", file=sys.stderr)


def _summary(model: Path, input_hw: Sequence[int], requests: int, choice: Choice) -> str:
    ranked = ", ".join(f"{n} {v:.1f}" for n, v in sorted(choice.fps.items(), key=lambda kv: -kv[1]))
    where = f"cached trial of {choice.measured}" if choice.cached else f"{choice.trial_s:.1f} s trial"
    size = f"{input_hw[0]}x{input_hw[1]}"
    head = (
        f"detector auto: {choice.backend} {choice.precision} for {model.name} at {size}, "
        f"{requests} request(s): {choice.reason}"
    )
    text = head + (f" [{where}, FPS: {ranked}]" if ranked else "")
    if choice.notes:
        text += "; " + "; ".join(choice.notes)
    return text


def choose_backend(
    model_path: str | Path,
    cfg: Config,
    requests: int,
    frames_from: str | Path | None,
    create: Callable,
    machine: MachineInfo | None = None,
):
    """A detector on the runtime and precision auto picks for this model here (see the module docstring).
    `create(model, cfg, requests)` builds a named backend; `frames_from` is the run's own source (a file or
    folder) for the accuracy check when `detector.auto_frames` is empty. Returns (detector, Choice)."""
    det_cfg = cfg.detector
    model = Path(model_path)
    if not model.exists():
        raise PerceptionError(f"model not found: {model}")
    machine = machine or machine_info()
    kind = model_kind(model)
    if det_cfg.precision == "int8":  # the candidates set the precision of the rest: check the model here
        require_quantized(model, "backend auto")
    cands = candidates(kind, machine, det_cfg.precision)
    trial = trial_enabled(det_cfg.auto_trial) and len(cands) > 1
    key = choice_key(
        model, input_size(model, det_cfg.input_size), requests, det_cfg.precision, trial, machine
    )
    directory = cache_dir(det_cfg.cache_dir)
    path = cache_file(directory, key)
    frames_spec = det_cfg.auto_frames or (
        str(frames_from) if frames_from and Path(frames_from).exists() else ""
    )

    cached = read_cached(path, key)
    if cached is not None and not (cached.unchecked and frames_spec):
        detector = _load(model, cfg, requests, Candidate(cached.backend, cached.precision), create)
        _say(_summary(model, detector.input_hw, requests, cached))  # once loaded: a failure is the only line
        return detector, cached

    t0 = time.monotonic()
    frames = load_frames(frames_spec, CHECK_FRAMES) if frames_spec else []
    if trial:
        detectors: dict[Candidate, object] = {}
        failed: list[str] = []
        for c in cands:
            try:
                detectors[c] = _load(model, cfg, requests, c, create)
            except PerceptionError as exc:
                if not detectors:  # the first guess cannot load it: the model or config is at fault
                    raise
                failed.append(f"{c.name} failed to load: {first_line(exc)}")  # no candidate, said why
        fps = run_trial(detectors, _timing_images(frames))
    else:
        detectors = {cands[0]: _load(model, cfg, requests, cands[0], create)}
        fps = {cands[0]: float("nan")}
        failed = []
        if cands[0].reduced:  # the guess still needs its accuracy check; fp32 is the fallback
            fallback = next((c for c in cands if not c.reduced), None)
            if fallback is not None:
                detectors[fallback] = _load(model, cfg, requests, fallback, create)
                fps = {cands[0]: 2.0, fallback: 1.0}  # rank only: the guess first

    reference: list | None = None

    def check(c: Candidate) -> RecallCheck | None:
        nonlocal reference
        if not frames:
            return None
        fp32 = next(d for k, d in detectors.items() if not k.reduced)
        if reference is None:
            reference = [fp32.detect(f.image) for f in frames]
        got = [detectors[c].detect(f.image) for f in frames]
        return check_recall(
            frames, reference, got, fp32.labels, det_cfg.conf_threshold, cfg.tracker.new_track_score_threshold
        )

    chosen, reason, checks, notes, unchecked = decide(fps, check)
    if not trial:
        passed = f", {reason.split(', ', 1)[1]}" if chosen.reduced else ""
        reason = f"CPU features ({machine.describe()}), no trial{passed}"
        fps = {}
    choice = Choice(
        chosen.backend,
        chosen.precision,
        reason,
        fps={c.name: round(v, 2) for c, v in fps.items()},
        checks=checks,
        notes=failed + notes,
        trial_s=round(time.monotonic() - t0, 2),
        measured=time.strftime("%Y-%m-%d %H:%M"),
        unchecked=unchecked,
    )
    error = write_cached(path, key, choice)
    choice.cache_file = "" if error else str(path)
    if error:
        choice.notes.append(f"choice not cached ({error}; set detector.cache_dir)")
    _say(_summary(model, detectors[chosen].input_hw, requests, choice))
    for c, d in detectors.items():
        if c != chosen:
            d.close()
    return detectors[chosen], choice
