"""Queue and SNS topic names for unibus topics, groups and dead-letter queues.

SQS names are at most 80 characters of letters, digits, ``-`` and ``_`` (FIFO names end in
``.fifo``, counted in the 80). A topic's ``.`` becomes ``_``; a name that would be too long
keeps its start and gains a hash of the whole, so it stays unique and stable.
"""

from __future__ import annotations

import hashlib
import re
import uuid

from unibus.errors import ConfigError

__all__ = ["Names"]

_ALLOWED = re.compile(r"^[A-Za-z0-9_.-]+$")
_MAX = 80
FIFO_SUFFIX = ".fifo"
SEPARATOR = "--"


class Names:
    def __init__(self, prefix: str, fifo: bool) -> None:
        self.prefix = prefix
        self.fifo = fifo

    def check(self, name: str, what: str = "topic") -> str:
        """The name as SQS spells it; ConfigError when it cannot be one."""
        if not isinstance(name, str) or not name or not _ALLOWED.match(name):
            raise ConfigError(
                f"{what} name {name!r} is not usable on SQS: use letters, digits, '-', '_' "
                "and '.' only")
        if name.lower().endswith(FIFO_SUFFIX):
            raise ConfigError(
                f"{what} name {name!r} ends in '.fifo': name it without the suffix; FIFO mode "
                "(sqs+fifo:// or fifo=true) adds it to every queue and SNS topic itself")
        return name.replace(".", "_")

    def _finish(self, base: str) -> str:
        suffix = FIFO_SUFFIX if self.fifo else ""
        room = _MAX - len(suffix)
        if len(base) > room:
            digest = hashlib.sha1(base.encode(), usedforsecurity=False).hexdigest()[:8]
            base = f"{base[:room - 9]}-{digest}"
        return base + suffix

    def _base(self, topic: str, group: str | None = None) -> str:
        base = self.prefix + self.check(topic)
        if group is not None:
            base += SEPARATOR + self.check(group, "group")
        return base

    def topic_queue(self, topic: str) -> str:
        """Queue mode: the one queue of a topic."""
        return self._finish(self._base(topic))

    def group_queue(self, topic: str, group: str) -> str:
        """SNS mode: the queue of one group."""
        return self._finish(self._base(topic, group))

    def private_queue(self, topic: str) -> str:
        """SNS mode: the queue of one ungrouped consumer, deleted when it closes."""
        return self._finish(self._base(topic) + f"{SEPARATOR}p-{uuid.uuid4().hex[:12]}")

    def dead_letter_queue(self, topic: str, group: str | None) -> str:
        return self._finish(self._base(topic, group) + "-dlq")

    def sns_topic(self, topic: str) -> str:
        return self._finish(self._base(topic))

    def belongs_to(self, queue_name: str, topic: str) -> bool:
        """Whether ``queue_name`` is one of ``topic``'s queues (for teardown)."""
        base = self._base(topic)
        name = queue_name.removesuffix(FIFO_SUFFIX)
        if name in (base, base + "-dlq") or name.startswith(base + SEPARATOR):
            return True
        room = _MAX - (len(FIFO_SUFFIX) if self.fifo else 0)
        kept = base[:room - 9]  # what a hashed (shortened) name keeps of the whole
        return (len(name) == room and name.startswith(kept)
                and (len(base) >= room - 9 or name[len(base)] == "-"))
