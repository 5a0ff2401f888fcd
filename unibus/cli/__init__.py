"""The ``unibus`` command line (``unibus --help``)."""

from unibus.cli.app import app, main

__all__ = ["app", "main"]
