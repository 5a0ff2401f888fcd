"""unibus: one async producer / consumer / dead-letter interface over many brokers.

    async with unibus.connect("kafka://localhost:9092") as bus:
        await bus.publish("orders.placed", {"id": 42}, key="42")
        consumer = await bus.consumer("orders.placed", group="billing")
        async for delivery in consumer:
            ...
            await delivery.ack()
"""

from unibus.bus import Bus, connect
from unibus.capabilities import (
    Capabilities,
    DeliveryGuarantee,
    Ordering,
    Requirements,
    RetentionModel,
)
from unibus.config import Settings
from unibus.deadletter import DeadLetter
from unibus.errors import (
    AlreadySettledError,
    BackendNotInstalledError,
    CapabilityError,
    ClosedError,
    ConfigError,
    ConnectionFailedError,
    ConsumeError,
    InvalidMessageError,
    MessageTooLargeError,
    OperationTimeoutError,
    PublishError,
    SerializationError,
    SettlementError,
    TopicNotFoundError,
    TopologyError,
    UnibusError,
    UnknownSchemeError,
)
from unibus.message import Message, Receipt
from unibus.positions import Position
from unibus.protocols import Backend, Consumer, DeadLetterQueue, Delivery, Producer
from unibus.topology import TopicSpec

__version__ = "0.1.0"

__all__ = [
    "AlreadySettledError",
    "Backend",
    "BackendNotInstalledError",
    "Bus",
    "Capabilities",
    "CapabilityError",
    "ClosedError",
    "ConfigError",
    "ConnectionFailedError",
    "ConsumeError",
    "Consumer",
    "DeadLetter",
    "DeadLetterQueue",
    "Delivery",
    "DeliveryGuarantee",
    "InvalidMessageError",
    "Message",
    "MessageTooLargeError",
    "OperationTimeoutError",
    "Ordering",
    "Position",
    "Producer",
    "PublishError",
    "Receipt",
    "Requirements",
    "RetentionModel",
    "SerializationError",
    "Settings",
    "SettlementError",
    "TopicNotFoundError",
    "TopicSpec",
    "TopologyError",
    "UnibusError",
    "UnknownSchemeError",
    "connect",
]
