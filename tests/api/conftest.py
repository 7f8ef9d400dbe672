"""Fixtures for the server tests (the helpers themselves are in api_helpers.py)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Iterator

import pytest
from api_helpers import make_settings, running_server

from server.config import Settings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path / "data")


@pytest.fixture
def server(settings: Settings) -> Iterator[SimpleNamespace]:
    with running_server(settings) as srv:
        yield srv
