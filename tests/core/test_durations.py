import math

import pytest

import unibus
from unibus.durations import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("15m", 900), ("7d", 604800), ("1h30m", 5400), ("250ms", 0.25), ("42", 42), (3, 3)],
)
def test_parse(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["soon", "-5", "5x", "", "1h 30", True, None])
def test_bad_durations_are_config_errors(bad: object) -> None:
    with pytest.raises(unibus.ConfigError):
        parse_duration(bad)  # type: ignore[arg-type]


def test_format() -> None:
    assert format_duration(900) == "15m"
    assert format_duration(math.inf) == "unlimited"
    assert format_duration(1.5) == "1.5s"
