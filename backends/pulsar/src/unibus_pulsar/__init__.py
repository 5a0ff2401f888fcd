"""unibus backend for pulsar (work in progress)."""
