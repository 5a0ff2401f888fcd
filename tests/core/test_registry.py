from importlib.metadata import EntryPoint

import pytest

import unibus
from unibus import registry


@pytest.fixture(autouse=True)
def fresh_registry() -> None:
    registry._entry_points.cache_clear()
    yield
    registry._entry_points.cache_clear()


def test_builtins_and_installed_backends_are_found_by_scheme() -> None:
    assert {"memory", "sqlite"} <= set(registry.schemes())
    assert registry.backend_class("memory").name == "memory"


@pytest.mark.parametrize(
    "url", ["", "   ", "localhost:9092", "kafka:/localhost", "kafka://host:notaport", 42]
)
def test_malformed_urls_are_config_errors(url: object) -> None:
    with pytest.raises(unibus.ConfigError):
        unibus.connect(url)  # type: ignore[arg-type]


def test_unknown_scheme_is_named() -> None:
    with pytest.raises(unibus.UnknownSchemeError, match="carrier-pigeon"):
        unibus.connect("carrier-pigeon://coop")


def test_missing_backend_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    real = registry.entry_points

    def without_kafka(group: str) -> list[EntryPoint]:
        return [ep for ep in real(group=group) if not ep.name.startswith("kafka")]

    monkeypatch.setattr(registry, "entry_points", without_kafka)
    with pytest.raises(unibus.BackendNotInstalledError, match="pip install unibus-kafka"):
        unibus.connect("kafka://127.0.0.1:9092")


def test_duplicate_scheme_registrations_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    clash = [
        EntryPoint("memory", "unibus.backends.memory:MemoryBackend", registry.GROUP),
        EntryPoint("memory", "someone_else:Backend", registry.GROUP),
    ]
    monkeypatch.setattr(registry, "entry_points", lambda group: clash)
    with pytest.raises(unibus.ConfigError, match="registered twice"):
        unibus.connect("memory://")


def test_a_backend_whose_module_fails_to_import_reports_installation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    broken = [EntryPoint("nats", "unibus_nats_missing_module:NATSBackend", registry.GROUP)]
    monkeypatch.setattr(registry, "entry_points", lambda group: broken)
    with pytest.raises(unibus.BackendNotInstalledError, match="unibus-nats"):
        unibus.connect("nats://127.0.0.1:4222")
