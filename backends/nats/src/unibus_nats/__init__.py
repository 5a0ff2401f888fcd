"""unibus backend for nats (work in progress)."""
