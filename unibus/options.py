"""Backend options: validated before anything connects."""

from __future__ import annotations

import pydantic

__all__ = ["BackendOptions"]


class BackendOptions(pydantic.BaseModel):
    """Options every backend understands; each backend subclasses this with its own.

    Options come from the URL query string and from keyword arguments to
    :func:`unibus.connect` (keywords win). Unknown options are refused.
    """

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)

    auto_create: bool = pydantic.Field(
        default=True, description="create topics, groups and DLQs on first use"
    )
    client_id: str = pydantic.Field(default="unibus", min_length=1)
    connect_timeout: float = pydantic.Field(default=10.0, gt=0)
