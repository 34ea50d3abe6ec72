"""Fixtures: session-wide clients for the anonymous role and two tenants."""

import pytest
from lib import _open, client, member
from postgrest import SyncPostgrestClient


@pytest.fixture(scope="session")
def anon() -> SyncPostgrestClient:
    return client()


@pytest.fixture(scope="session")
def globex() -> SyncPostgrestClient:
    return member("globex")


@pytest.fixture(scope="session")
def initech() -> SyncPostgrestClient:
    return member("initech")


def pytest_sessionfinish(session, exitstatus):
    for http in _open:
        http.close()
