"""unibus benchmarks: unibus against the raw clients (and FastStream), same broker, one run."""
