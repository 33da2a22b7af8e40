from tests.client.conftest import gateway  # the client tests' gateway on a port

__all__ = ["gateway"]
