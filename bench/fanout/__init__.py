"""The fan-out benchmark: a C load generator, a tick pump, the Node reference, one orchestrator.

`python -m bench.fanout [--quick]`; the method and the results are in docs/benchmarks.md.
"""
