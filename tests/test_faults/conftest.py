"""Fixtures of the fault tests: a Postgres server per module that its tests may stop and restart."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.test_faults.postgres import RestartablePostgres


@pytest.fixture(scope="session")
def faults_folder() -> Iterator[Path]:
    """Where the servers keep their data: outside pytest's own temporary folder, whose permissions every
    pytest session that starts on the machine resets to the owner's alone, which would lock out the
    server's OS user (and make a restart fail)."""
    folder = Path(tempfile.mkdtemp(prefix="stepline-faults-"))
    folder.chmod(0o711)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_template(faults_folder: Path) -> Path:
    """A cluster made by initdb once, copied for each module (initdb takes seconds, a copy much less)."""
    template = RestartablePostgres(_new_folder(faults_folder, "template"))
    template.init()
    return template.data


@pytest.fixture(scope="module")
def postgres(faults_folder: Path, postgres_template: Path) -> Iterator[RestartablePostgres]:
    server = RestartablePostgres(Path(tempfile.mkdtemp(prefix="server-", dir=faults_folder)))
    server.folder.chmod(0o711)
    server.init(postgres_template)
    server.start()
    try:
        yield server
    finally:
        server.cleanup()


def _new_folder(parent: Path, name: str) -> Path:
    folder = parent / name
    folder.mkdir(mode=0o711)
    return folder
