"""The scale-out benchmark: the fan-out scenarios on memory, Redis, two nodes and --workers 2."""
