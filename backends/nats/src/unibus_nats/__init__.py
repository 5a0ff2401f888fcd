"""NATS JetStream (and core NATS) backend for unibus: ``nats://host:4222``."""

from unibus_nats._backend import NATSBackend
from unibus_nats._consumer import NATSDelivery
from unibus_nats._options import NATSOptions

__all__ = ["NATSBackend", "NATSDelivery", "NATSOptions"]
