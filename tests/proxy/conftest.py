"""Proxy tests run on uvloop, the loop the proxy uses in production."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pytest
import uvloop


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], Any]] | None:
    return {"uvloop": uvloop.new_event_loop}
