"""unibus backend for kafka (work in progress)."""
