"""The durable engine measured beside the memory engine (`python -m bench.durable`)."""
