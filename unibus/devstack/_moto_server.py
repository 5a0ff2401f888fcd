"""moto's server with ReceiveMessage made atomic across its request threads.

moto scans a queue and marks the messages it hands out without a lock, so two ReceiveMessage
calls served at the same moment by two threads can both take the same visible message: a
duplicate that real SQS gives only rarely and that makes exactly-once assertions flaky. Here
each scan runs under one lock; long polls wait outside it.

    python -m unibus.devstack._moto_server -H 127.0.0.1 -p 4566
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

from moto.server import main
from moto.sqs.models import SQSBackend

_SCAN = threading.Lock()
_scan_once = SQSBackend.receive_message


def _receive_message(self: SQSBackend, queue_name: str, count: int,
                     wait_seconds_timeout: int, visibility_timeout: int,
                     message_attribute_names: list[str] | None = None) -> Any:
    deadline = time.monotonic() + wait_seconds_timeout
    while True:
        with _SCAN:
            found = _scan_once(self, queue_name, count, 0, visibility_timeout,
                               message_attribute_names)
        remaining = deadline - time.monotonic()
        if found or remaining <= 0:
            return found
        queue = self.get_queue(queue_name)
        if queue.messages:  # visible but taken by a concurrent scan, or delayed: look again
            time.sleep(min(0.05, remaining))
        else:
            queue.wait_for_messages(min(1.0, remaining))  # type: ignore[arg-type]


SQSBackend.receive_message = _receive_message  # type: ignore[method-assign]

if __name__ == "__main__":
    main(sys.argv[1:])
