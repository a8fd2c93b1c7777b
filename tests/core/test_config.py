"""Configuration: the YAML defaults and the models' own defaults are one and the same."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from perception.core.config import Config, TrackerConfig, default_config_path, load_config
from perception.core.errors import PerceptionError, first_line

KIND = "unit"


def test_defaults_in_code_equal_the_yaml() -> None:
    """configs/default.yaml is where defaults are documented; the models carry the same values, so an
    algorithm built in code (`Tracker(TrackerConfig())`) behaves as one built from the YAML."""
    assert Config() == load_config()
    assert load_config().tracker == TrackerConfig()


def test_first_line_of_an_error() -> None:
    assert first_line(ValueError("bad\nsecond line")) == "bad"
    assert first_line(ValueError("\n  \nreal cause\n")) == "real cause"
    assert first_line(ValueError("")) == "ValueError"  # no IndexError on an empty message
    assert first_line(RuntimeError("x"), with_type=True) == "RuntimeError: x"
    assert first_line(PerceptionError()) == "PerceptionError"


# -- any YAML at all: a Config, or one line naming the problem ---------------------------------------------

DEFAULTS = yaml.safe_load(default_config_path().read_text())
KEYS = sorted(
    {k for section in DEFAULTS.values() if isinstance(section, dict) for k in section} | set(DEFAULTS)
)

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
    | st.sampled_from(["fast", "forever", "tcp", "auto", "yolox", "dashcam", "kitti", "car", "person", "1.5"])
)
values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=12,
)
# Real sections with real keys (so validation is reached deep inside), random values, the odd stranger key.
sections = st.dictionaries(
    st.sampled_from(sorted(DEFAULTS)) | st.text(max_size=6),
    st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=6), values, max_size=4) | values,
    max_size=4,
)


def _assert_config_or_one_line(path: Path) -> None:
    try:
        cfg = load_config(path)
    except PerceptionError as exc:
        message = str(exc)
        assert message.startswith(f"config {path}") and "\n" not in message and "\r" not in message, message
    else:
        assert isinstance(cfg, Config)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("random_config") / "config.yaml"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=sections)
def test_any_structured_yaml_loads_or_fails_in_one_line(scratch: Path, data: dict) -> None:
    scratch.write_text(yaml.safe_dump(data, allow_unicode=True))
    _assert_config_or_one_line(scratch)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    text=st.text(alphabet=st.sampled_from(list("abcdefgkmoprstuz019 .:-_[]{},&*!|>'\"#?\n\t")), max_size=80)
    | st.binary(max_size=80)
)
def test_any_text_or_bytes_load_or_fail_in_one_line(scratch: Path, text: str | bytes) -> None:
    """YAML syntax soup (anchors, aliases, tags, flow collections) and raw bytes."""
    if isinstance(text, str):
        scratch.write_text(text)
    else:
        scratch.write_bytes(text)
    _assert_config_or_one_line(scratch)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    line=st.integers(min_value=0, max_value=10_000),
    value=st.text(max_size=10)
    | st.sampled_from(["true", ".nan", "-1", "*a", "&a [*a]", "!!binary aGk=", "2024-01-01", "[1, 2, 3]"]),
)
def test_the_defaults_with_one_value_changed(scratch: Path, line: int, value: str) -> None:
    lines = default_config_path().read_text().splitlines()
    settings_lines = [i for i, text in enumerate(lines) if ": " in text and not text.lstrip().startswith("#")]
    i = settings_lines[line % len(settings_lines)]
    key = lines[i].split(": ", 1)[0]
    lines[i] = f"{key}: {value}"
    scratch.write_text("\n".join(lines) + "\n")
    _assert_config_or_one_line(scratch)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("detector:\n  conf_threshold: true\n", "conf_threshold: Input should be a valid number (got True)"),
        ("detector:\n  conf_threshold: '0.5'\n", "Input should be a valid number (got '0.5')"),
        ("detector:\n  max_detections: 3.0\n", "detector.max_detections: Input should be a valid integer"),
        ("tracker:\n  max_lost_s: .inf\n", "tracker.max_lost_s: Input should be a finite number"),
        ("source: &s\n  mode: *s\n", "cannot be read as plain values"),
        ("camera:\n  profile: nowhere\n", "camera.profile: camera profile not found: nowhere"),
        ('"a\\nb": 1\n', "unknown config key: 'a\\nb'"),  # a key with a line break, quoted
        # found by the random YAML below: PyYAML's int constructor raises ValueError on these
        ("0b_", "invalid YAML value: invalid literal for int() with base 2"),
        ("source:\n  mode: 0x_\n", "invalid YAML value: invalid literal for int() with base 16"),
    ],
)
def test_strict_values(scratch: Path, text: str, needle: str) -> None:
    scratch.write_text(text)
    with pytest.raises(PerceptionError) as info:
        load_config(scratch)
    assert needle in str(info.value)


def test_numbers_where_numbers_go(scratch: Path) -> None:
    scratch.write_text(
        "tracker:\n  max_lost_s: 2\ndetector:\n  input_size: [320, 640]\n  classes: [car, 0]\n"
    )
    cfg = load_config(scratch)
    assert cfg.tracker.max_lost_s == 2.0 and cfg.detector.input_size == (320, 640)
    assert cfg.detector.classes == ["car", 0]


def test_not_utf8(scratch: Path) -> None:
    scratch.write_bytes("detector:\n  backend: onnxruntime # caf\u00e9\n".encode("latin-1"))
    with pytest.raises(PerceptionError, match=r"not UTF-8 text \(byte 0xe9 at offset 38\)"):
        load_config(scratch)
