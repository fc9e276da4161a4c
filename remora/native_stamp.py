"""What a mypyc build was made from, so that it is rebuilt exactly when that changes.

mypyc type-checks the compiled modules against every module they import, compiled or not, and
writes what it learnt into the C: an edit to an interpreted module can change what the compiled
code should be. Timestamps missed that, and a touch after a build could hide an edit made during
it. So a build records a content hash of every file in the compiled modules' import closure, read
before compiling starts, with the toolchain's versions, and stays fresh while all of them match.

The closure is found by reading import statements (mypy follows the same ones, `TYPE_CHECKING`
blocks included). Where a name resolved to no file, the paths that would have provided it are
recorded too: creating one of them changes what the build would import, so it makes it stale.
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import json
import os
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeGuard

FORMAT = 1


@dataclass(frozen=True, slots=True)
class Stamp:
    files: dict[str, str]  # path under the source root -> sha256 of the content the build read
    absent: tuple[str, ...]  # paths under the source root the closure looked for and did not find
    toolchain: dict[str, str]

    def to_json(self) -> str:
        body = {
            "format": FORMAT,
            "files": self.files,
            "absent": list(self.absent),
            "toolchain": self.toolchain,
        }
        return json.dumps(body, indent=1, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Stamp | None:
        """None for anything this version did not write: such a build counts as stale."""
        try:
            body = json.loads(text)
        except ValueError:
            return None
        if not isinstance(body, dict) or body.get("format") != FORMAT:
            return None
        files, absent, tools = body.get("files"), body.get("absent"), body.get("toolchain")
        if not (_str_map(files) and _str_map(tools) and isinstance(absent, list)):
            return None
        if not all(isinstance(path, str) for path in absent):
            return None
        return cls(dict(files), tuple(absent), dict(tools))


def _str_map(value: object) -> TypeGuard[dict[str, str]]:
    return isinstance(value, dict) and all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    )


def toolchain() -> dict[str, str]:
    """What turns the same source into different extensions: the interpreter and its ABI, and
    mypy (mypyc and the typeshed it checks against ship with it) and setuptools."""
    return {
        "python": sys.version,
        "abi": importlib.machinery.EXTENSION_SUFFIXES[0],
        "mypy": _version("mypy"),
        "setuptools": _version("setuptools"),
    }


def _version(distribution: str) -> str:
    """The installed version, from the name of the package's dist-info directory: `remora proxy`
    checks the build at every start, and importlib.metadata would add 15-25 ms to that."""
    spec = importlib.util.find_spec(distribution)  # a top-level name: nothing is imported
    if spec is None or spec.origin is None:
        return "not installed"
    found = sorted(Path(spec.origin).parent.parent.glob(f"{distribution}-*.dist-info"))
    if not found:
        return "unknown"
    return found[-1].name.removeprefix(f"{distribution}-").removesuffix(".dist-info")


def take(root: Path, modules: Iterable[str], extra: Iterable[str]) -> Stamp:
    """Read and hash, now, the closure of `modules` under `root` plus the `extra` files (paths
    relative to `root`) that the build reads besides modules."""
    closure = _Closure(root)
    for relative in extra:
        if (root / relative).is_file():
            closure.contents[relative] = (root / relative).read_bytes()
        else:
            closure.absent.add(relative)
    modules = list(modules)
    packages = {module.split(".", 1)[0] for module in modules}
    seen: set[str] = set()
    todo = modules
    while todo:
        name = todo.pop()
        if name in seen or name.split(".", 1)[0] not in packages:
            continue
        seen.add(name)
        parts = name.split(".")
        todo.extend(".".join(parts[:i]) for i in range(1, len(parts)))  # parents run first
        path = closure.find(name)
        if path is not None:
            content = closure.read(path)
            todo.extend(_imports(name, path.stem == "__init__", content))
    digests = {path: hashlib.sha256(data).hexdigest() for path, data in closure.contents.items()}
    return Stamp(dict(sorted(digests.items())), tuple(sorted(closure.absent)), toolchain())


class _Closure:
    """The files read so far, and the paths looked for in vain."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.contents: dict[str, bytes] = {}
        self.absent: set[str] = set()
        self._found: dict[str, Path | None] = {}

    def read(self, path: Path) -> bytes:
        content = path.read_bytes()
        self.contents[path.relative_to(self.root).as_posix()] = content
        return content

    def find(self, name: str) -> Path | None:
        """The file mypy would read for the module, in its order (a package before a module, a
        stub before source). Under a plain module nothing is looked for: a submodule there
        would first need that module turned into a package, a path already looked for."""
        if name in self._found:
            return self._found[name]
        parent, _, leaf = name.rpartition(".")
        above = self.find(parent) if parent else None
        found: Path | None = None
        if above is None or above.stem == "__init__":
            base = self.root.joinpath(*name.split("."))
            for candidate in (
                base / "__init__.pyi",
                base / "__init__.py",
                base.parent / (leaf + ".pyi"),
                base.parent / (leaf + ".py"),
            ):
                if candidate.is_file():
                    found = candidate
                    break
                self.absent.add(candidate.relative_to(self.root).as_posix())
        self._found[name] = found
        return found


def _imports(name: str, is_package: bool, content: bytes) -> Iterator[str]:
    """Every module an import statement in the file may name; `from a import b` names `a.b`
    too, in case `b` is a module. A file that does not parse adds nothing: the build fails on
    it anyway."""
    import ast  # only a build reads imports; the freshness check at start-up does not

    try:
        tree = ast.parse(content)
    except SyntaxError:
        return
    here = name.split(".") if is_package else name.split(".")[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            yield target
            yield from (f"{target}.{alias.name}" for alias in node.names if alias.name != "*")


def changes(stamp: Stamp, root: Path) -> list[str]:
    """What differs now from what the build read, by content: an empty list means fresh."""
    found: list[str] = []
    now = toolchain()
    for key in sorted(now.keys() | stamp.toolchain.keys()):
        before, after = stamp.toolchain.get(key, "none"), now.get(key, "none")
        if before != after:
            found.append(f"{key} {before} -> {after}")
    for relative, digest in stamp.files.items():
        try:
            content = (root / relative).read_bytes()
        except OSError:
            found.append(f"{relative} (removed)")
            continue
        if hashlib.sha256(content).hexdigest() != digest:
            found.append(relative)
    prefix = str(root) + os.sep  # plain strings: a check costs a few ms at every proxy start
    found.extend(f"{path} (new)" for path in stamp.absent if os.path.exists(prefix + path))
    return found
