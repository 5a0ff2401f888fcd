"""Configuration from keywords, environment (``UNIBUS_*``) or a YAML file.

Environment variables: ``UNIBUS_URL``, ``UNIBUS_SERIALIZER``, ``UNIBUS_REQUIREMENTS__REPLAY=true``,
``UNIBUS_OPTIONS__CLIENT_ID=billing`` (nested keys use ``__``), and ``UNIBUS_CONFIG`` naming a
YAML file with the same keys::

    url: kafka://localhost:9092
    requirements: {delivery: exactly_once, ordering: partition, replay: true}
    options: {client_id: billing}

Precedence: keyword arguments, then environment, then the YAML file, then defaults.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pydantic
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from unibus.capabilities import Requirements
from unibus.errors import ConfigError

__all__ = ["DEFAULT_URL", "Settings", "load_settings"]

#: The embedded durable default: no server needed.
DEFAULT_URL = "sqlite:///unibus.db"


class Settings(BaseSettings):
    """Everything :func:`unibus.connect` needs to pick and check a backend."""

    model_config = SettingsConfigDict(
        env_prefix="UNIBUS_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    url: str = DEFAULT_URL
    requirements: Requirements = Requirements()
    options: dict[str, Any] = pydantic.Field(default_factory=dict)
    serializer: str = "json"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        path = os.environ.get("UNIBUS_CONFIG")
        if path:
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=Path(path)))
        return tuple(sources)


def load_settings(**values: Any) -> Settings:
    """Settings from ``values``, the environment and ``UNIBUS_CONFIG``; ConfigError if bad."""
    path = os.environ.get("UNIBUS_CONFIG")
    if path and not Path(path).is_file():
        raise ConfigError(f"UNIBUS_CONFIG names {path!r}, which is not a readable file")
    try:
        return Settings(**{k: v for k, v in values.items() if v is not None})
    except pydantic.ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'config'}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigError(f"invalid unibus configuration: {problems}") from None
    except Exception as exc:  # YAML syntax errors and unreadable files
        raise ConfigError(f"cannot read unibus configuration: {exc}") from exc
