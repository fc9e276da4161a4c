"""On-disk cache of compiled modules.

Trust model. `Module.deserialize` maps native machine code from its input and runs it: feeding it
bytes an attacker controls is arbitrary code execution. So the cache only deserializes files it
wrote itself, which it proves with an HMAC-SHA256 tag:

- the cache directory is created 0700 and refused if another user owns it or if it is group- or
  world-writable (then anyone else could plant files);
- a random 32-byte secret lives in `<dir>/secret` (0600, created with O_EXCL);
- an entry is `MAGIC || HMAC(secret, key || payload) || payload`, named `<key>.cwasm`, where
  `key = sha256(sha256(module) || wasmtime version || engine config fingerprint)`; binding the key
  into the tag means a valid entry renamed to another key is rejected too;
- entries are written to a temp file in the same dir and `os.replace`d, so readers never see a torn
  file; a tag mismatch deletes the entry and recompiles.

This defends against copied-in, truncated, corrupted or mis-keyed files. It cannot defend against
an attacker already running as our own user, who could read the secret (or just ptrace us).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import stat
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import wasmtime

from remora.wasm.engine import WASMTIME_VERSION, EngineHandle
from remora.wasm.errors import CacheError, ModuleFormatError, last_line

MAGIC = b"REMORA-WASM-CACHE-1\n"
_TAG_LEN = 32


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "remora" / "wasm"


@dataclass
class CacheStats:
    compiles: int = 0
    hits: int = 0
    rejected: int = 0
    write_failures: int = 0


def compile_module(
    engine: wasmtime.Engine, wasm: bytes, origin: str = "<bytes>"
) -> wasmtime.Module:
    """Compile, turning wasmtime's parse/validation failure into a `ModuleFormatError`."""
    if not isinstance(wasm, bytes | bytearray):
        raise ModuleFormatError(f"{origin}: expected module bytes, got {type(wasm).__name__}")
    if not wasm.startswith(b"\0asm"):
        # wasmtime would otherwise try anything else as WAT text and report e.g. "input was not
        # valid utf-8" for random bytes; remora takes binary modules only.
        raise ModuleFormatError(f"{origin}: offset 0: not a WebAssembly binary (bad magic)")
    try:
        return wasmtime.Module(engine, bytes(wasm))
    except wasmtime.WasmtimeError as exc:
        raise ModuleFormatError(
            f"{origin}: invalid WebAssembly module: {last_line(str(exc))}"
        ) from None


class ModuleCache:
    """Compiled-module cache for one directory; safe to share between threads."""

    def __init__(self, directory: Path | str | None = None) -> None:
        self.directory = Path(directory) if directory is not None else default_cache_dir()
        self.stats = CacheStats()
        self._lock = threading.Lock()
        self._secret = self._open_dir()

    def _open_dir(self) -> bytes:
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            info = self.directory.stat()
        except OSError as exc:
            raise CacheError(f"cache dir {self.directory}: {exc.strerror}") from None
        if info.st_uid != os.geteuid():
            raise CacheError(f"cache dir {self.directory} is owned by uid {info.st_uid}, not us")
        if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise CacheError(f"cache dir {self.directory} is writable by other users")
        secret_path = self.directory / "secret"
        try:
            fd = os.open(secret_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            secret = secret_path.read_bytes()
            if len(secret) != 32:
                raise CacheError(f"cache secret {secret_path} is malformed") from None
            return secret
        except OSError as exc:
            raise CacheError(f"cache secret {secret_path}: {exc.strerror}") from None
        secret = secrets.token_bytes(32)
        with os.fdopen(fd, "wb") as f:
            f.write(secret)
        return secret

    @staticmethod
    def key(handle: EngineHandle, wasm: bytes) -> str:
        h = hashlib.sha256()
        h.update(hashlib.sha256(wasm).digest())
        h.update(WASMTIME_VERSION.encode())
        h.update(handle.config.fingerprint().encode())
        return h.hexdigest()

    def path_for(self, key: str) -> Path:
        return self.directory / f"{key}.cwasm"

    def _tag(self, key: str, payload: bytes) -> bytes:
        return hmac.new(self._secret, key.encode() + payload, hashlib.sha256).digest()

    def load(self, handle: EngineHandle, wasm: bytes, origin: str = "<bytes>") -> wasmtime.Module:
        """The compiled module for `wasm` on `handle`'s engine, compiling only on a miss."""
        wasm = bytes(wasm)
        key = self.key(handle, wasm)
        module = self._read(handle, key)
        if module is not None:
            with self._lock:
                self.stats.hits += 1
            return module
        module = compile_module(handle.engine, wasm, origin)
        with self._lock:
            self.stats.compiles += 1
        self._write(key, module.serialize())
        return module

    def _read(self, handle: EngineHandle, key: str) -> wasmtime.Module | None:
        path = self.path_for(key)
        try:
            blob = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise CacheError(f"cache entry {path}: {exc.strerror}") from None
        head = len(MAGIC) + _TAG_LEN
        tag, payload = blob[len(MAGIC) : head], blob[head:]
        if not blob.startswith(MAGIC) or not hmac.compare_digest(tag, self._tag(key, payload)):
            self._reject(path)
            return None
        try:
            # Safe only because the tag above proves we wrote these bytes (see module docstring).
            return wasmtime.Module.deserialize(handle.engine, payload)
        except wasmtime.WasmtimeError:
            self._reject(path)
            return None

    def _reject(self, path: Path) -> None:
        with self._lock:
            self.stats.rejected += 1
        path.unlink(missing_ok=True)

    def _write(self, key: str, payload: bytes | bytearray) -> None:
        payload = bytes(payload)
        blob = MAGIC + self._tag(key, payload) + payload
        try:
            fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".tmp-", suffix=".cwasm")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(blob)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, self.path_for(key))
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError:
            # A full or read-only disk costs a recompile next time, never a failed run.
            with self._lock:
                self.stats.write_failures += 1
