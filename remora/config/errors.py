"""Config errors that name the field path, so a user can find the line to fix."""

from __future__ import annotations

from collections.abc import Iterable


class ConfigError(Exception):
    """One problem in a config, located by its field path (`static_resources.listeners[0].name`)."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path
        self.message = message


class ConfigErrors(Exception):
    """Every problem found in one config; validation reports them all, not just the first."""

    def __init__(self, errors: Iterable[ConfigError]) -> None:
        self.errors = list(errors)
        super().__init__("\n".join(str(e) for e in self.errors))


class ErrorCollector:
    """Accumulates errors while compiling, so one pass reports every problem."""

    def __init__(self) -> None:
        self.errors: list[ConfigError] = []

    def add(self, path: str, message: str) -> None:
        self.errors.append(ConfigError(path, message))

    def extend(self, errors: Iterable[ConfigError]) -> None:
        self.errors.extend(errors)

    def raise_if_any(self) -> None:
        if self.errors:
            raise ConfigErrors(self.errors)
