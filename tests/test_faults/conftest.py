"""Fixtures of the fault tests: a Postgres server per module that its tests may stop and restart."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.test_faults.postgres import RestartablePostgres


@pytest.fixture(scope="session")
def postgres_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cluster made by initdb once, copied for each module (initdb takes seconds, a copy much less)."""
    template = RestartablePostgres(tmp_path_factory.mktemp("faults-template"))
    template.init()
    return template.data


@pytest.fixture(scope="module")
def postgres(
    tmp_path_factory: pytest.TempPathFactory, postgres_template: Path
) -> Iterator[RestartablePostgres]:
    server = RestartablePostgres(tmp_path_factory.mktemp("faults"))
    server.init(postgres_template)
    server.start()
    try:
        yield server
    finally:
        server.cleanup()
