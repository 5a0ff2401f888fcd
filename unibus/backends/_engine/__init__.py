"""The embedded engine shared by the ``sqlite://`` and ``memory://`` backends.

A queue over an append-only log, kept in SQLite. Design: docs/design/embedded-engine.md.
"""
