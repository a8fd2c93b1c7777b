"""INT8 calibration data for TensorRT, without TensorRT: images from a folder or frames sampled from a video,
checked for size, and preprocessed by the same letterbox as inference, so the activation ranges TensorRT
measures are the ones the engine will see on real frames."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from perception.core.errors import PerceptionError
from perception.detect.preprocess import Letterbox
from perception.sources.files import IMAGE_SUFFIXES


def _evenly(count: int, keep: int) -> np.ndarray:
    """`keep` indices spread evenly over range(count), all of them when count <= keep."""
    if count <= keep:
        return np.arange(count)
    return np.unique(np.linspace(0, count - 1, keep).round().astype(np.int64))


class CalibrationSet:
    """An image folder (searched recursively) or a video, at most `max_images` of it, sampled evenly.

    Fewer than `min_images` usable images are refused: INT8 ranges measured on a handful of frames clip
    whatever those frames did not show, and the engine quietly loses accuracy.
    """

    def __init__(self, source: str | Path, min_images: int, max_images: int) -> None:
        self.source = Path(source)
        if not self.source.exists():
            raise PerceptionError(f"calibration source not found: {self.source}")
        self._files: list[Path] = []
        self._frames = np.zeros(0, np.int64)
        if self.source.is_dir():
            files = sorted(
                p for p in self.source.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
            )
            available = len(files)
            self._files = [files[i] for i in _evenly(available, max_images)]
            kind = "images"
        else:
            cap = cv2.VideoCapture(str(self.source))
            available = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if cap.isOpened() else 0
            cap.release()
            if available <= 0:
                raise PerceptionError(
                    f"calibration source {self.source} is neither an image folder nor a readable video"
                )
            self._frames = _evenly(available, max_images)
            kind = "frames"
        if available < min_images:
            raise PerceptionError(
                f"calibration set {self.source} has {available} {kind}; INT8 needs at least {min_images} "
                "(tensorrt.calib_min_images) for representative ranges"
            )
        self.digest = self._digest()

    def __len__(self) -> int:
        return len(self._files) if self._files else len(self._frames)

    def _digest(self) -> str:
        """Identifies the selection (names, sizes, modification times, frame indices), so a calibration cache
        is reused only for the same data; cheap even for large videos."""
        h = hashlib.sha256()
        paths = self._files or [self.source]
        for p in paths:
            st = p.stat()
            name = p.relative_to(self.source) if self._files else p.name
            h.update(f"{name}|{st.st_size}|{st.st_mtime_ns}\n".encode())
        h.update(self._frames.tobytes())
        return h.hexdigest()

    def images(self) -> Iterator[tuple[str, np.ndarray]]:
        """(name, BGR image) for each selected image or frame; an unreadable one is an error, not a gap."""
        if self._files:
            for path in self._files:
                image = cv2.imread(str(path), cv2.IMREAD_COLOR)
                if image is None:
                    raise PerceptionError(f"calibration image {path} cannot be read")
                yield path.name, image
            return
        cap = cv2.VideoCapture(str(self.source))
        try:
            wanted = iter(self._frames.tolist())
            target = next(wanted, None)
            index = 0
            while target is not None:
                if index < target:
                    ok = cap.grab()  # skipped frames are decoded but never converted or copied
                else:
                    ok, image = cap.read()
                    if ok:
                        yield f"{self.source.name}#{index}", image
                    target = next(wanted, None)
                if not ok:
                    raise PerceptionError(f"calibration video {self.source} ended early, at frame {index}")
                index += 1
        finally:
            cap.release()

    def batches(self, letterbox: Letterbox, batch: int) -> Iterator[np.ndarray]:
        """Full (batch, 3, H, W) float32 batches in the model's input format; one buffer, refilled for each
        batch (the consumer copies it to the GPU before asking for the next). An incomplete last batch is
        dropped: TensorRT calibrates on full batches only."""
        out = np.empty((batch, 3, *letterbox.input_hw), np.float32)
        filled = 0
        for _name, image in self.images():
            out[filled] = letterbox(image)[0]
            filled += 1
            if filled == batch:
                yield out
                filled = 0


def calibration_cache_path(
    engine_dir: Path, onnx_path: Path, onnx_sha256: str, input_hw: tuple[int, int], data_digest: str, trt: str
) -> Path:
    """Where TensorRT's calibration table for this model, input size, data and TensorRT version is kept."""
    h, w = input_hw
    return engine_dir / f"{onnx_path.stem}-{h}x{w}-{onnx_sha256[:12]}-data{data_digest[:12]}-trt{trt}.calib"
