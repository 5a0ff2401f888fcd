from pathlib import Path

import pytest

import unibus


def test_builtin_refuses_what_it_cannot_do_before_connecting() -> None:
    with pytest.raises(unibus.CapabilityError) as info:
        unibus.connect("memory://", requirements={"transactions": True})
    assert info.value.requirement == "transactions=true"
    assert info.value.reason
    assert info.value.backend == "memory"


def test_refusal_lists_installed_backends_that_can() -> None:
    with pytest.raises(unibus.CapabilityError) as info:
        unibus.connect("memory://", requirements={"transactions": True,
                                                  "ordering": "partition"})
    for able in info.value.alternatives:
        assert able in str(info.value)


def test_requirements_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UNIBUS_URL", "memory://")
    monkeypatch.setenv("UNIBUS_REQUIREMENTS__TRANSACTIONS", "true")
    with pytest.raises(unibus.CapabilityError, match="transactions"):
        unibus.connect()


def test_config_comes_from_yaml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "unibus.yaml"
    config.write_text("url: memory://\nrequirements:\n  replay: true\n  ordering: partition\n")
    monkeypatch.setenv("UNIBUS_CONFIG", str(config))
    bus = unibus.connect()
    assert bus.backend.name == "memory"
    assert bus.requirements.replay is True


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("url: memory://\nrequirements: {delivery: twice}\n", "delivery"),
        ("url: memory://\nbogus: 1\n", "bogus"),
        ("url: [unclosed\n", "configuration"),
    ],
)
def test_bad_config_files_are_config_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: str, match: str
) -> None:
    config = tmp_path / "unibus.yaml"
    config.write_text(content)
    monkeypatch.setenv("UNIBUS_CONFIG", str(config))
    with pytest.raises(unibus.ConfigError, match=match):
        unibus.connect()


def test_missing_config_file_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UNIBUS_CONFIG", "/nonexistent/unibus.yaml")
    with pytest.raises(unibus.ConfigError, match="not a readable file"):
        unibus.connect()


def test_invalid_option_values_are_config_errors() -> None:
    with pytest.raises(unibus.ConfigError, match="connect_timeout"):
        unibus.connect("memory://?connect_timeout=soon")
    with pytest.raises(unibus.ConfigError, match="unknown serializer"):
        unibus.connect("memory://", serializer="avro")


async def test_bus_must_be_opened_before_use() -> None:
    bus = unibus.connect("memory://")
    with pytest.raises(unibus.ClosedError, match="not open"):
        await bus.publish("t", b"x")
    async with bus:
        await bus.publish("t", b"x")
    with pytest.raises(unibus.ClosedError):
        await bus.publish("t", b"x")


async def test_non_serializable_payload_is_refused_before_sending() -> None:
    async with unibus.connect("memory://") as bus:
        with pytest.raises(unibus.SerializationError):
            await bus.publish("t", object())
        with pytest.raises(unibus.ConfigError, match="delay"):
            await bus.publish("t", b"x", delay=-1)


def test_sqlite_path_with_a_nul_character_is_a_config_error() -> None:
    with pytest.raises(unibus.ConfigError, match="NUL"):
        unibus.connect("sqlite://\x00")
