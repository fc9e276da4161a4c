from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def c_filters(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("wasm-filters")
