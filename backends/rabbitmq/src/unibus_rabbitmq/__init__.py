"""unibus backend for rabbitmq (work in progress)."""
