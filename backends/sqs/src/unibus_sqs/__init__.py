"""unibus backend for Amazon SQS and SQS-compatible servers (ElasticMQ, moto).

``sqs://[region]?endpoint_url=...`` (standard queues) or ``sqs+fifo://[region]`` (FIFO); see
``docs/backends/sqs.md``.
"""

from unibus_sqs._backend import SQSBackend
from unibus_sqs._options import SQSOptions

__all__ = ["SQSBackend", "SQSOptions"]
