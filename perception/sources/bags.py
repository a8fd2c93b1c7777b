"""ROS bags and MCAP recordings as a source (`perception run drive.bag --topic /camera/image_raw`): ROS 1
`.bag`, ROS 2 bag folders (`metadata.yaml`, sqlite3 or MCAP storage) and bare `.mcap` / `.db3` files, read
with `rosbags` (pip install -e ".[bags]"), so recordings from a test vehicle replay like a video file.

Frames come from one `sensor_msgs/Image` or `sensor_msgs/CompressedImage` topic at their header stamps
(relative to the first; the bag's record time where a stamp is unset), so the motion models see the camera's
own timing, drops included.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from perception.core.errors import PerceptionError, first_line
from perception.core.types import Frame
from perception.sources.pacing import Pacer

BAG_SUFFIXES = (".bag", ".mcap", ".db3")
IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
# Raw encodings read: channels, and the conversion to BGR (None: already BGR / grey handled below).
_ENCODINGS: dict[str, tuple[int, int | None]] = {
    "bgr8": (3, None),
    "8UC3": (3, None),
    "rgb8": (3, cv2.COLOR_RGB2BGR),
    "bgra8": (4, cv2.COLOR_BGRA2BGR),
    "rgba8": (4, cv2.COLOR_RGBA2BGR),
    "mono8": (1, cv2.COLOR_GRAY2BGR),
    "8UC1": (1, cv2.COLOR_GRAY2BGR),
}


def is_bag(path: Path) -> bool:
    """A ROS 1 bag, an MCAP or sqlite3 file, or a ROS 2 bag folder (one with metadata.yaml)."""
    if path.is_dir():
        return (path / "metadata.yaml").is_file()
    return path.suffix.lower() in BAG_SUFFIXES and path.is_file()


def _listing(topics: dict[str, str]) -> str:
    return ", ".join(f"{topic} ({kind.replace('/msg/', '/')})" for topic, kind in sorted(topics.items()))


def decode_image(msg: Any, msgtype: str) -> np.ndarray:
    """A BGR uint8 image from a sensor_msgs Image (8-bit encodings in `_ENCODINGS`) or CompressedImage."""
    data = np.asarray(msg.data, np.uint8)
    if msgtype.endswith("CompressedImage"):
        image = cv2.imdecode(data, cv2.IMREAD_COLOR)
        if image is None:
            raise ValueError(f"cannot decode a {msg.format or 'compressed'} image")
        return image
    if msg.encoding not in _ENCODINGS:
        raise ValueError(f"image encoding {msg.encoding!r} not supported ({', '.join(_ENCODINGS)})")
    channels, conversion = _ENCODINGS[msg.encoding]
    h, w = msg.height, msg.width
    if h * msg.step > data.size or msg.step < w * channels:
        raise ValueError(
            f"{w}x{h} {msg.encoding} needs {h * w * channels} bytes, the message has {data.size}"
        )
    image = data[: h * msg.step].reshape(h, msg.step)[:, : w * channels].reshape(h, w, channels)
    return np.ascontiguousarray(image) if conversion is None else cv2.cvtColor(image, conversion)


class BagSource:
    """One image topic of a bag, replayed like a video file (every frame in `fast`, paced in `realtime`)."""

    def __init__(self, path: Path, topic: str | None, realtime: bool) -> None:
        try:
            from rosbags.highlevel import AnyReader
            from rosbags.typesys import Stores, get_typestore
        except ImportError:
            raise PerceptionError(f'reading {path} needs rosbags: pip install -e ".[bags]"') from None
        self.name = str(path)
        self.is_live = realtime
        self._pacer = Pacer(realtime)
        try:  # a corrupt file fails anywhere in there (headers, indexes, definitions), with any error type
            self._reader = AnyReader([path], default_typestore=get_typestore(Stores.LATEST))
            self._reader.open()
        except Exception as exc:
            raise PerceptionError(f"cannot read bag {path}: {first_line(exc)}") from None
        try:
            self._connections = self._pick(path, topic)
            self.topic = self._connections[0].topic
            self.frame_count = sum(c.msgcount for c in self._connections) or None
            duration_s = self._reader.duration / 1e9
            count = self.frame_count or 0
            self.fps = (count - 1) / duration_s if count > 1 and duration_s > 0 else 25.0
            self._messages = self._reader.messages(connections=self._connections)
        except BaseException:
            self.close()
            raise
        self._index = 0
        self._first_ns: int | None = None

    def _pick(self, path: Path, topic: str | None) -> list[Any]:
        """The topic's connections: the one image topic, or the one named; else the error lists them."""
        every = {c.topic: c.msgtype for c in self._reader.connections}
        images = {t: kind for t, kind in every.items() if kind in IMAGE_TYPES}
        if not images:
            listed = _listing(every) or "none"
            raise PerceptionError(
                f"no sensor_msgs/Image or CompressedImage topic in {path}; its topics: {listed}"
            )
        if topic is None:
            if len(images) > 1:
                raise PerceptionError(
                    f"{path} has {len(images)} image topics, pick one with --topic: {_listing(images)}"
                )
            topic = next(iter(images))
        if topic not in images:
            raise PerceptionError(
                f"topic {topic} is not an image topic of {path}; its image topics: {_listing(images)}"
            )
        return [c for c in self._reader.connections if c.topic == topic]

    def read(self) -> Frame | None:
        t0 = time.monotonic_ns()
        try:
            connection, record_ns, raw = next(self._messages)
        except StopIteration:
            return None
        except Exception as exc:
            raise PerceptionError(
                f"bag {self.name}: cannot read frame {self._index} of {self.topic}: {first_line(exc)}"
            ) from None
        try:
            msg = self._reader.deserialize(raw, connection.msgtype)
            image = decode_image(msg, connection.msgtype)
        except Exception as exc:
            raise PerceptionError(
                f"bag {self.name}: frame {self._index} of {self.topic}: {first_line(exc)}"
            ) from None
        decode_ms = (time.monotonic_ns() - t0) / 1e6
        stamp = msg.header.stamp
        stamp_ns = stamp.sec * 1_000_000_000 + stamp.nanosec
        stamp_ns = stamp_ns or record_ns  # an unset header stamp: when the bag recorded it
        if self._first_ns is None:
            self._first_ns = stamp_ns
        source_ts_s = (stamp_ns - self._first_ns) / 1e9
        self._pacer.wait(source_ts_s)
        frame = Frame(image, self._index, time.monotonic_ns(), source_ts_s, decode_ms)
        self._index += 1
        return frame

    def close(self) -> None:
        """Idempotent: the pipeline closes a source when it ends, the run again at exit."""
        if self._reader.stack is not None:
            self._reader.close()
