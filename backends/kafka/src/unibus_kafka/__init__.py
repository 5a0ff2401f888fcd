"""unibus backend for Apache Kafka (aiokafka): ``kafka://host:9092``."""

from unibus_kafka._backend import KafkaBackend
from unibus_kafka._consumer import KafkaConsumer
from unibus_kafka._dead_letters import KafkaDeadLetterQueue
from unibus_kafka._options import KafkaOptions
from unibus_kafka._producer import KafkaProducer
from unibus_kafka._transactions import KafkaTransaction

__all__ = [
    "KafkaBackend",
    "KafkaConsumer",
    "KafkaDeadLetterQueue",
    "KafkaOptions",
    "KafkaProducer",
    "KafkaTransaction",
]
