from __future__ import annotations

import pytest

from .support import StaticContext


@pytest.fixture
def context() -> StaticContext:
    return StaticContext()
