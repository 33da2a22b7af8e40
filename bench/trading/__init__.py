"""`python -m bench.trading`: post round trips through the gateway vs straight to the simulator."""
