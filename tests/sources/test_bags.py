"""ROS bags and MCAP as sources: real ROS 1 bags, ROS 2 bags (sqlite3 folder) and bare ROS 2 MCAP files,
written with rosbags' own writers from the shared clip's frames, give the same tracks and warnings as the same
frames from an image folder (compared like benchmarks/compare_runs.py); a missing, ambiguous or wrong topic,
a bag without images and a corrupt bag are each one line."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from rosbags.rosbag1 import Writer as Ros1Writer
from rosbags.rosbag2 import StoragePlugin
from rosbags.rosbag2 import Writer as Ros2Writer
from rosbags.typesys import Stores, get_typestore

from perception.core.config import load_config
from perception.core.errors import PerceptionError
from perception.sources.bags import BagSource, decode_image
from perception.sources.files import open_source
from tests.conftest import HIGHWAY_CLIP, REPO, YOLOX_ONNX
from tests.helpers import assert_one_line_error, run_cli

KIND = "integration"
FRAMES, SIZE_WH, EPOCH_S = 50, (480, 270), 1_700_000_000
CAMERA, COMPRESSED = "/camera/image_raw", "/camera/image_raw/compressed"
SMALL = "detector:\n  backend: onnxruntime\n  input_size: [256, 448]\noutput:\n  video: false\n"

_spec = importlib.util.spec_from_file_location("compare_runs", REPO / "benchmarks" / "compare_runs.py")
assert _spec is not None and _spec.loader is not None
compare_runs = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(compare_runs)


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    """The clip's first frames, small (BGR)."""
    cap = cv2.VideoCapture(str(HIGHWAY_CLIP))
    out = []
    for _ in range(FRAMES):
        ok, image = cap.read()
        assert ok
        out.append(cv2.resize(image, SIZE_WH, interpolation=cv2.INTER_AREA))
    cap.release()
    return out


def stamp(typestore, i: int):
    ns = EPOCH_S * 1_000_000_000 + i * 40_000_000  # 25 fps
    return typestore.types["builtin_interfaces/msg/Time"](sec=ns // 10**9, nanosec=ns % 10**9)


def image_msg(typestore, i: int, image: np.ndarray, encoding: str, ros1: bool = False):
    pixels = image if encoding == "bgr8" else cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    header = typestore.types["std_msgs/msg/Header"]
    head = (
        header(seq=i, stamp=stamp(typestore, i), frame_id="cam")
        if ros1
        else header(stamp(typestore, i), "cam")
    )
    h, w = image.shape[:2]
    msg = typestore.types["sensor_msgs/msg/Image"]
    return msg(head, h, w, encoding, 0, w * 3, np.ascontiguousarray(pixels).reshape(-1))


def compressed_msg(typestore, i: int, image: np.ndarray):
    ok, png = cv2.imencode(".png", image)  # lossless, so the pixels are the folder's
    assert ok
    head = typestore.types["std_msgs/msg/Header"](stamp(typestore, i), "cam")
    return typestore.types["sensor_msgs/msg/CompressedImage"](head, "png", png.reshape(-1))


def write_ros1(path: Path, frames: list[np.ndarray], images: bool = True) -> Path:
    ts = get_typestore(Stores.ROS1_NOETIC)
    with Ros1Writer(path) as bag:
        other = bag.add_connection("/status", "std_msgs/msg/String", typestore=ts)
        camera = bag.add_connection(CAMERA, "sensor_msgs/msg/Image", typestore=ts) if images else None
        for i, image in enumerate(frames):
            t = EPOCH_S * 10**9 + i * 40_000_000 + 5_000_000  # recorded a little after the stamp
            if camera is not None:
                bag.write(
                    camera, t, ts.serialize_ros1(image_msg(ts, i, image, "bgr8", ros1=True), camera.msgtype)
                )
            status = ts.types["std_msgs/msg/String"](data=f"frame {i}")
            bag.write(other, t, ts.serialize_ros1(status, other.msgtype))
    return path


def write_ros2(path: Path, frames: list[np.ndarray], plugin: StoragePlugin, both: bool) -> Path:
    """A ROS 2 bag folder: raw RGB images on CAMERA, and with `both` PNG ones on COMPRESSED too."""
    ts = get_typestore(Stores.ROS2_HUMBLE)
    with Ros2Writer(path, version=9, storage_plugin=plugin) as bag:
        raw = bag.add_connection(CAMERA, "sensor_msgs/msg/Image", typestore=ts)
        png = (
            bag.add_connection(COMPRESSED, "sensor_msgs/msg/CompressedImage", typestore=ts) if both else None
        )
        for i, image in enumerate(frames):
            t = EPOCH_S * 10**9 + i * 40_000_000 + 5_000_000
            bag.write(raw, t, ts.serialize_cdr(image_msg(ts, i, image, "rgb8"), raw.msgtype))
            if png is not None:
                bag.write(png, t, ts.serialize_cdr(compressed_msg(ts, i, image), png.msgtype))
    return path


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, frames: list[np.ndarray]) -> tuple[Path, Path]:
    """The same frames as an image folder at 25 fps, run once: the tracks every bag must reproduce."""
    root = tmp_path_factory.mktemp("bags")
    folder = root / "img1"
    folder.mkdir()
    for i, image in enumerate(frames):
        cv2.imwrite(str(folder / f"{i + 1:06d}.png"), image)
    config = root / "small.yaml"
    config.write_text(SMALL)
    proc = run_cli(
        "run", folder, "--fps", "25", "--model", YOLOX_ONNX, "--config", config, "--out", root / "ref"
    )
    assert proc.returncode == 0, proc.stderr
    return root, root / "ref" / "events.jsonl"


def same_run_as_reference(reference: tuple[Path, Path], source: Path, *extra: str) -> None:
    root, expected = reference
    out = root / f"run_{source.name}"
    proc = run_cli(
        "run", source, *extra, "--model", YOLOX_ONNX, "--config", root / "small.yaml", "--out", out
    )
    assert proc.returncode == 0, proc.stderr
    problems = compare_runs.compare(expected, out / "events.jsonl", box_tol=0.05, est_tol=1e-3)
    assert problems == [], problems[:5]
    text = (out / "events.jsonl").read_text()
    assert text.count('"type": "frame"') == FRAMES and '"tracks": [{' in text


def test_a_ros1_bag_replays_its_only_image_topic(reference, frames) -> None:
    bag = write_ros1(reference[0] / "drive.bag", frames)
    same_run_as_reference(reference, bag)


def test_a_ros2_bag_folder_replays_the_named_topic(reference, frames) -> None:
    folder = write_ros2(reference[0] / "drive_ros2", frames, StoragePlugin.SQLITE3, both=True)
    same_run_as_reference(reference, folder, "--topic", COMPRESSED)
    same_run_as_reference(reference, folder, "--topic", CAMERA)


def test_a_bare_ros2_mcap_file_replays(reference, frames) -> None:
    folder = write_ros2(reference[0] / "drive_mcap", frames, StoragePlugin.MCAP, both=False)
    bare = reference[0] / "drive.mcap"
    shutil.copy(next(folder.glob("*.mcap")), bare)
    same_run_as_reference(reference, bare)


def test_frames_carry_the_header_stamps_relative_to_the_first(reference, frames) -> None:
    bag = write_ros1(reference[0] / "stamps.bag", frames[:5])
    source = open_source(str(bag), load_config().source)
    try:
        assert isinstance(source, BagSource) and source.frame_count == 5 and source.fps == pytest.approx(25)
        read = [source.read() for _ in range(6)]
    finally:
        source.close()
    assert read[-1] is None
    assert [f.source_ts_s for f in read[:5]] == pytest.approx([0.0, 0.04, 0.08, 0.12, 0.16])
    assert all(np.array_equal(f.image, image) for f, image in zip(read[:5], frames, strict=False))


def test_bad_topics_and_bags_are_one_line(reference, frames, tmp_path: Path) -> None:
    folder = reference[0] / "drive_ros2"
    if not folder.exists():
        write_ros2(folder, frames[:3], StoragePlugin.SQLITE3, both=True)
    proc = run_cli("run", folder, "--model", YOLOX_ONNX, "--out", tmp_path / "a")
    assert_one_line_error(proc, "2 image topics, pick one with --topic", CAMERA, COMPRESSED)
    proc = run_cli("run", folder, "--topic", "/status", "--model", YOLOX_ONNX, "--out", tmp_path / "b")
    assert_one_line_error(proc, "topic /status is not an image topic", "sensor_msgs/CompressedImage")
    no_images = write_ros1(tmp_path / "imu.bag", frames[:2], images=False)
    proc = run_cli("run", no_images, "--model", YOLOX_ONNX, "--out", tmp_path / "c")
    assert_one_line_error(proc, "no sensor_msgs/Image or CompressedImage topic", "/status (std_msgs/String)")
    corrupt = tmp_path / "corrupt.bag"
    corrupt.write_bytes(b"#ROSBAG V2.0\n" + bytes(range(256)) * 8)
    proc = run_cli("run", corrupt, "--model", YOLOX_ONNX, "--out", tmp_path / "d")
    assert_one_line_error(proc, f"cannot read bag {corrupt}")
    garbage = tmp_path / "garbage.mcap"
    garbage.write_bytes(b"not an mcap file at all")
    proc = run_cli("run", garbage, "--model", YOLOX_ONNX, "--out", tmp_path / "e")
    assert_one_line_error(proc, f"cannot read bag {garbage}")


@pytest.mark.unit
def test_raw_encodings_decode_to_bgr() -> None:
    ts = get_typestore(Stores.ROS2_HUMBLE)
    image = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3)
    assert np.array_equal(decode_image(image_msg(ts, 0, image, "rgb8"), "sensor_msgs/msg/Image"), image)
    assert np.array_equal(decode_image(image_msg(ts, 0, image, "bgr8"), "sensor_msgs/msg/Image"), image)
    padded = image_msg(ts, 0, image, "bgr8")  # rows padded to 20 bytes, as some drivers align them
    rows = np.zeros((4, 20), np.uint8)
    rows[:, :18] = image.reshape(4, 18)
    padded.step, padded.data = 20, rows.reshape(-1)
    assert np.array_equal(decode_image(padded, "sensor_msgs/msg/Image"), image)
    bad = image_msg(ts, 0, image, "bgr8")
    bad.encoding = "bayer_rggb16"
    with pytest.raises(ValueError, match="bayer_rggb16"):
        decode_image(bad, "sensor_msgs/msg/Image")
    with pytest.raises(PerceptionError, match="source not found"):
        open_source("/nonexistent/drive.bag", load_config().source)
