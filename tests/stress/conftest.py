"""The stress tests reuse the coordinator tests' in-process ``api`` fixture (every provider)."""

from tests.coordinator.conftest import Api, api, cosmos_server, pytest_generate_tests

__all__ = ["Api", "api", "cosmos_server", "pytest_generate_tests"]
