import dataclasses
from datetime import UTC, datetime

import pydantic
import pytest

import unibus
from unibus.serializers import BytesSerializer, JsonSerializer, serializer_for


class Order(pydantic.BaseModel):
    id: int
    placed: datetime


@dataclasses.dataclass
class Line:
    sku: str


def test_json_round_trips_models_and_dataclasses() -> None:
    json = JsonSerializer()
    order = Order(id=1, placed=datetime(2026, 1, 1, tzinfo=UTC))
    assert json.decode(json.encode(order), Order) == order
    assert json.decode(json.encode(Line("a"))) == {"sku": "a"}


def test_non_serializable_payloads_raise_a_typed_error() -> None:
    with pytest.raises(unibus.SerializationError, match="object"):
        JsonSerializer().encode(object())
    with pytest.raises(unibus.SerializationError):
        BytesSerializer().encode(3.5)
    with pytest.raises(unibus.SerializationError):
        JsonSerializer().decode(b"{not json")
    with pytest.raises(unibus.SerializationError):
        JsonSerializer().decode(b'{"id": "x"}', Order)


def test_serializers_are_pluggable() -> None:
    class Upper:
        content_type = "text/upper"

        def encode(self, value: object) -> bytes:
            return str(value).upper().encode()

        def decode(self, data: bytes, into: object = None) -> object:
            return data.decode()

    assert serializer_for(Upper()).encode("a") == b"A"  # type: ignore[arg-type]
    with pytest.raises(unibus.ConfigError, match="unknown serializer"):
        serializer_for("avro")
    with pytest.raises(unibus.ConfigError):
        serializer_for(42)  # type: ignore[arg-type]
