"""Configuration: the YAML defaults and the models' own defaults are one and the same."""

from __future__ import annotations

from perception.config import Config, TrackerConfig, load_config
from perception.errors import PerceptionError, first_line

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
