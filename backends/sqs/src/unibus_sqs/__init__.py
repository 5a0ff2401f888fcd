"""unibus backend for sqs (work in progress)."""
