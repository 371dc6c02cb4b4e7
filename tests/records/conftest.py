from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.records.pgserver import PostgresServer, running_postgres


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    with running_postgres() as server:
        yield server


@pytest.fixture(params=[pytest.param("sqlite", marks=pytest.mark.unit),
                        pytest.param("postgres", marks=pytest.mark.adapter)])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> str | Path:
    """A fresh, empty records database of each backend: a SQLite path or a PostgreSQL URL."""
    if request.param == "sqlite":
        return tmp_path / "calls.db"
    server: PostgresServer = request.getfixturevalue("postgres")
    return server.new_database()
