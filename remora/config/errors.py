"""Config errors that name the field path, so a user can find the line to fix."""

from __future__ import annotations

from collections.abc import Iterable


class ConfigError(Exception):
    """One problem in a config, located by its field path (`static_resources.listeners[0].name`)."""

    def __init__(self, path: str, message: str) -> None:
        # `not supported: <path> (detail)` names its path already: print it once.
        names_path = bool(path) and message.startswith(f"not supported: {path}")
        super().__init__(f"{path}: {message}" if path and not names_path else message)
        self.path = path
        self.message = message


class ConfigErrors(Exception):
    """Every problem found in one config; validation reports them all, not just the first."""

    def __init__(self, errors: Iterable[ConfigError]) -> None:
        self.errors = list(errors)
        super().__init__("\n".join(str(e) for e in self.errors))

    def listing(self, source: str) -> list[str]:
        """The report as lines, the same at start-up (printed) and on a reload (logged), so an
        operator who learnt to read one can read the other."""
        lines = [f"invalid configuration {source!r}:", *(f"  {e}" for e in self.errors)]
        if len(self.errors) > 1:
            lines.append(f"{len(self.errors)} errors")
        return lines


class ErrorCollector:
    """Accumulates errors while compiling, so one pass reports every problem."""

    def __init__(self) -> None:
        self.errors: list[ConfigError] = []

    def add(self, path: str, message: str) -> None:
        self.extend([ConfigError(path, message)])

    def extend(self, errors: Iterable[ConfigError]) -> None:
        # Two checks may find the same problem (the field walk and a compiler): list it once.
        seen = {str(e) for e in self.errors}
        for error in errors:
            if str(error) not in seen:
                seen.add(str(error))
                self.errors.append(error)

    def raise_if_any(self) -> None:
        if self.errors:
            raise ConfigErrors(self.errors)
