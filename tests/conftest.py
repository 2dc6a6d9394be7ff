"""Fixtures shared by every test package (pytest loads plugins only from the root conftest)."""

pytest_plugins = (
    "tests.gateway.tls_fixtures",
    "tests.gateway.server_fixtures",
    "tests.kafka.broker_fixtures",
)
