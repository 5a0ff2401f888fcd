"""RabbitMQ backend for unibus (``amqp://``, ``amqps://``, ``rabbitmq://``), on aio-pika."""

from unibus_rabbitmq._backend import RabbitMQBackend
from unibus_rabbitmq._options import RabbitMQOptions

__all__ = ["RabbitMQBackend", "RabbitMQOptions"]
