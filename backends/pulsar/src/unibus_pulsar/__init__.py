"""unibus backend for Apache Pulsar (pulsar-client): ``pulsar://host:6650``."""

from unibus_pulsar._backend import PulsarBackend
from unibus_pulsar._consumer import PulsarConsumer
from unibus_pulsar._dead_letters import PulsarDeadLetterQueue
from unibus_pulsar._options import PulsarOptions
from unibus_pulsar._producer import PulsarProducer

__all__ = [
    "PulsarBackend",
    "PulsarConsumer",
    "PulsarDeadLetterQueue",
    "PulsarOptions",
    "PulsarProducer",
]
