"""One module per broker: the raw client used the way its docs recommend for throughput."""
