"""`CertificateAuthority`: the keys, the trust bundle, SVID signing and root rotation.

Sans-IO apart from its directory: time comes from an injectable clock, and nothing here listens
or waits, so the whole life of a CA (issue, rotate, expire, restart) runs in a unit test.

A CA either owns its roots (made on first start, rotated through prepare -> activate -> withdraw)
or signs with an operator's CA certificate and key (a root or an intermediate of the company
PKI), which remora never rotates: the operator replaces the files and restarts.
"""

from __future__ import annotations

import functools
import itertools
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from remora.xds.ca import certs, store
from remora.xds.ca.errors import CaError
from remora.xds.ca.spiffe import check_trust_domain, parse_id

__all__ = ["CaError", "CertificateAuthority", "IssuedSvid"]

MIN_TTL = 10.0  # short lifetimes are for tests and demos of rotation; 24 h is the default
MAX_TTL = 30 * 86400.0
SIGNING, TRUSTED, PREPARED = "signing", "trusted", "prepared"
_CSR_PEM = b"-----BEGIN CERTIFICATE REQUEST-----"


@dataclass(frozen=True)
class IssuedSvid:
    spiffe_id: str
    chain_pem: bytes  # the leaf, then the intermediates up to (not including) the root
    bundle_pem: bytes  # every root currently trusted
    serial: int
    not_before: float
    not_after: float
    signer_fingerprint: str


@dataclass
class _Root:
    id: int  # 0 for an operator's roots, which have no files of remora's
    cert: x509.Certificate
    key: certs.SigningKey | None
    state: str

    @property
    def fingerprint(self) -> str:
        return certs.fingerprint(self.cert)


@dataclass
class _Issued:
    """A ledger entry: enough to know which root still vouches for a live SVID, and until when."""

    serial: int
    signer: str
    not_after: float

    def as_dict(self) -> dict[str, Any]:
        return {"serial": f"{self.serial:x}", "signer": self.signer, "not_after": self.not_after}


def check_ttl(ttl: float, what: str = "ttl") -> float:
    if not MIN_TTL <= ttl <= MAX_TTL:
        raise CaError(
            f"{what} {ttl:.10g} s is outside [{MIN_TTL:.10g} s, {MAX_TTL:.10g} s (30 days)]"
        )
    return float(ttl)


_F = TypeVar("_F", bound=Callable[..., Any])


def _locked(method: _F) -> _F:
    @functools.wraps(method)
    def locked(self: CertificateAuthority, *args: Any, **kwargs: Any) -> Any:
        with self.lock:
            return method(self, *args, **kwargs)

    return cast(_F, locked)


class CertificateAuthority:
    def __init__(
        self,
        directory: Path,
        trust_domain: str,
        svid_ttl: float,
        clock: Callable[[], float],
        roots: list[_Root],
        signer: x509.Certificate,
        signer_key: certs.SigningKey,
        intermediates: Sequence[x509.Certificate] = (),
        operator: Path | None = None,
        ledger: Sequence[_Issued] = (),
        issued_total: int = 0,
    ) -> None:
        """Use `open()`; this takes what it has already loaded and checked."""
        self.directory = directory
        self.trust_domain = trust_domain
        self.svid_ttl = svid_ttl
        self._clock = clock
        self._roots = roots
        self._signer = signer
        self._signer_key = signer_key
        self._intermediates = list(intermediates)
        self._operator = operator
        self._ledger = list(ledger)
        self.issued_total = issued_total
        # Signing runs in a worker thread (it writes the ledger to disk) while the admin's
        # rotation steps run on the event loop: one at a time.
        self.lock = threading.RLock()

    # -- opening ----------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        directory: Path,
        trust_domain: str,
        *,
        svid_ttl: float = 86400.0,
        cert_file: Path | None = None,
        key_file: Path | None = None,
        bundle_file: Path | None = None,
        clock: Callable[[], float] = time.time,
    ) -> CertificateAuthority:
        """Load the CA in `directory`, creating it (and a first root) on the first start."""
        try:
            check_trust_domain(trust_domain)
        except ValueError as exc:
            raise CaError(str(exc)) from None
        check_ttl(svid_ttl, "SVID TTL")
        if (cert_file is None) != (key_file is None):
            raise CaError("an operator CA needs both its certificate file and its key file")
        if bundle_file is not None and cert_file is None:
            raise CaError("a trust bundle file is only used with an operator CA certificate")
        store.ensure_directory(directory)
        state = store.read_state(directory)
        operator = cert_file is not None
        if state is not None:
            if state.get("trust_domain") != trust_domain:
                raise CaError(
                    f"CA directory {directory} was created for trust domain "
                    f"{state.get('trust_domain')!r}, not {trust_domain!r}: SVIDs of one trust "
                    "domain cannot come from another's CA"
                )
            if bool(state.get("operator")) != operator:
                raise CaError(
                    f"CA directory {directory} holds "
                    + ("an operator CA's state; pass its certificate and key files"
                       if state.get("operator") else
                       "remora's own roots; use another directory for an operator CA")
                )  # fmt: skip
        ledger = [_Issued(int(e["serial"], 16), e["signer"], float(e["not_after"]))
                  for e in (state or {}).get("issued", [])]  # fmt: skip
        total = int((state or {}).get("issued_total", 0))
        if cert_file is not None and key_file is not None:
            signer, key, intermediates, roots = _load_operator(
                cert_file, key_file, bundle_file, clock()
            )
            ca = cls(directory, trust_domain, svid_ttl, clock, roots, signer, key, intermediates,
                     operator=cert_file, ledger=ledger, issued_total=total)  # fmt: skip
        else:
            roots = _load_roots(directory, state) if state else []
            if not roots:
                cert, new_key = certs.make_root(f"remora root {trust_domain} 1", clock())
                roots = [_Root(1, cert, new_key, SIGNING)]
                _write_root(directory, roots[0])
            signing = next(r for r in roots if r.state == SIGNING)
            assert signing.key is not None
            ca = cls(directory, trust_domain, svid_ttl, clock, roots, signing.cert, signing.key,
                     ledger=ledger, issued_total=total)  # fmt: skip
        ca._prune()
        ca._save()
        return ca

    # -- what it serves ---------------------------------------------------------------------

    @property
    def operator(self) -> bool:
        return self._operator is not None

    @property
    def signer_fingerprint(self) -> str:
        return certs.fingerprint(self._signer)

    @_locked
    def bundle_pem(self) -> bytes:
        """Every root a workload should trust now, oldest first."""
        return certs.pem([r.cert for r in self._roots])

    @_locked
    def sign(self, csr_pem: bytes, spiffe_id: str, ttl: float | None = None) -> IssuedSvid:
        """An X.509-SVID for `spiffe_id` over the CSR's key; the CSR's own names are ignored."""
        ttl = check_ttl(self.svid_ttl if ttl is None else ttl)
        try:
            parsed = parse_id(spiffe_id)
        except ValueError as exc:
            raise CaError(str(exc)) from None
        if parsed.trust_domain != self.trust_domain:
            raise CaError(f"SPIFFE ID {spiffe_id!r} is not in trust domain {self.trust_domain!r}")
        public_key = _load_csr_key(csr_pem)
        now = self._clock()
        not_before, not_after = self._validity(now, ttl)
        leaf = certs.make_svid(
            public_key, spiffe_id, self._signer, self._signer_key, not_before, not_after
        )
        signer = self.signer_fingerprint
        self._ledger.append(_Issued(leaf.serial_number, signer, float(not_after)))
        self.issued_total += 1
        self._prune()
        self._save()
        return IssuedSvid(
            spiffe_id=spiffe_id,
            chain_pem=certs.pem([leaf, *self._intermediates]),
            bundle_pem=self.bundle_pem(),
            serial=leaf.serial_number,
            not_before=float(not_before),
            not_after=float(not_after),
            signer_fingerprint=signer,
        )

    @_locked
    def serving_certificate(self, hosts: Sequence[str]) -> tuple[bytes, bytes]:
        """(chain PEM, key PEM) for the CA's own HTTPS endpoint, from the current signer. It
        lives a day at least, however short the SVIDs' lifetime (it is reissued when the signer
        changes anyway)."""
        not_before, not_after = self._validity(self._clock(), max(self.svid_ttl, 86400.0))
        cert, key = certs.make_serving(hosts, self._signer, self._signer_key, not_before, not_after)
        return certs.pem([cert, *self._intermediates]), certs.key_pem(key)

    @_locked
    def status(self) -> dict[str, Any]:
        self._prune()
        live: dict[str, int] = {}
        for entry in self._ledger:
            live[entry.signer] = live.get(entry.signer, 0) + 1
        signer = self.signer_fingerprint
        roots = [
            {
                "fingerprint": root.fingerprint,
                "subject": root.cert.subject.rfc4514_string(),
                "serial": f"{root.cert.serial_number:x}",
                "not_after": root.cert.not_valid_after_utc.timestamp(),
                "state": root.state,
                "unexpired_svids": self._vouched_by(root, live),
            }
            for root in self._roots
        ]
        return {
            "trust_domain": self.trust_domain,
            "svid_ttl": self.svid_ttl,
            "operator_ca": str(self._operator) if self._operator else None,
            "signer": {
                "fingerprint": signer,
                "subject": self._signer.subject.rfc4514_string(),
                "not_after": self._signer.not_valid_after_utc.timestamp(),
            },
            "roots": roots,
            "issued_total": self.issued_total,
            "unexpired_svids": len(self._ledger),
        }

    def _vouched_by(self, root: _Root, live: dict[str, int]) -> int:
        """Unexpired SVIDs that depend on `root`: signed by it, or by the operator's
        intermediate that chains to it."""
        count = live.get(root.fingerprint, 0)
        if self.operator and root.state == SIGNING and root.fingerprint != self.signer_fingerprint:
            count += live.get(self.signer_fingerprint, 0)
        return count

    # -- rotation ---------------------------------------------------------------------------

    @_locked
    def prepare_rotation(self) -> None:
        """Make the next root and trust it, still signing with the current one, so every
        workload learns the new root (with its next SVID) before anything is signed by it."""
        self._own_roots("prepare a rotation")
        if prepared := self._in(PREPARED):
            raise CaError(
                f"a rotation is already prepared (root {prepared.fingerprint[:16]}); activate it"
            )
        if old := self._in(TRUSTED):
            raise CaError(
                f"the previous root {old.fingerprint[:16]} is still trusted; withdraw it before "
                "preparing another rotation"
            )
        number = max(r.id for r in self._roots) + 1
        cert, key = certs.make_root(f"remora root {self.trust_domain} {number}", self._clock())
        root = _Root(number, cert, key, PREPARED)
        _write_root(self.directory, root)
        self._roots.append(root)
        self._save()

    @_locked
    def activate_rotation(self) -> None:
        """Sign with the prepared root from now on; the old root stays trusted."""
        self._own_roots("activate a rotation")
        prepared = self._in(PREPARED)
        if prepared is None:
            raise CaError("nothing to activate: prepare a rotation first")
        current = self._in(SIGNING)
        assert current is not None and prepared.key is not None
        current.state, prepared.state = TRUSTED, SIGNING
        self._signer, self._signer_key = prepared.cert, prepared.key
        self._save()

    @_locked
    def withdraw_old(self, force: bool = False) -> None:
        """Drop the old root from the bundle, once no unexpired SVID depends on it (or forced:
        those SVIDs then fail to verify at every peer that took the new bundle)."""
        self._own_roots("withdraw a root")
        old = self._in(TRUSTED)
        if old is None:
            if self._in(PREPARED):
                raise CaError("no old root to withdraw: the prepared root is not active yet")
            raise CaError("no old root to withdraw: prepare and activate a rotation first")
        self._prune()
        live = [e for e in self._ledger if e.signer == old.fingerprint]
        if live and not force:
            last = max(e.not_after for e in live)
            raise CaError(
                f"{len(live)} unexpired SVID(s) signed by the old root {old.fingerprint[:16]} "
                f"(the last expires at {certs.utc(last).isoformat()}); wait for them, or force"
            )
        self._roots.remove(old)
        self._ledger = [e for e in self._ledger if e.signer != old.fingerprint]
        self._save()
        for path in _root_paths(self.directory, old.id):
            path.unlink(missing_ok=True)

    # -- internals --------------------------------------------------------------------------

    def _own_roots(self, action: str) -> None:
        if self._operator is not None:
            raise CaError(
                f"cannot {action}: this CA signs with the operator's certificate "
                f"{self._operator}; rotate it by replacing that certificate and key and restarting"
            )

    def _in(self, state: str) -> _Root | None:
        return next((r for r in self._roots if r.state == state), None)

    def _validity(self, now: float, ttl: float) -> tuple[int, int]:
        signer_end = int(self._signer.not_valid_after_utc.timestamp())
        if now >= signer_end:
            raise CaError(f"the signing certificate expired at {certs.utc(signer_end).isoformat()}")
        return int(now) - certs.CLOCK_SKEW, min(int(now + ttl), signer_end)

    def _prune(self) -> None:
        now = self._clock()
        self._ledger = [e for e in self._ledger if e.not_after > now]

    def _save(self) -> None:
        state: dict[str, Any] = {
            "trust_domain": self.trust_domain,
            "operator": self.operator,
            "issued": [e.as_dict() for e in self._ledger],
            "issued_total": self.issued_total,
        }
        if not self.operator:
            state["roots"] = [{"id": r.id, "state": r.state, "fingerprint": r.fingerprint}
                              for r in self._roots]  # fmt: skip
        store.write_state(self.directory, state)
        # Public, for workloads and tools that fetch the bundle out of band (and the tests).
        store.write_atomic(self.directory / store.BUNDLE, self.bundle_pem(), 0o644)


def _root_paths(directory: Path, number: int) -> tuple[Path, Path]:
    return directory / f"root-{number}.pem", directory / f"root-{number}.key"


def _write_root(directory: Path, root: _Root) -> None:
    assert root.key is not None
    cert_path, key_path = _root_paths(directory, root.id)
    store.write_atomic(key_path, certs.key_pem(root.key), 0o600)
    store.write_atomic(cert_path, certs.pem([root.cert]), 0o644)


def _load_roots(directory: Path, state: dict[str, Any]) -> list[_Root]:
    roots: list[_Root] = []
    for entry in state.get("roots", []):
        cert_path, key_path = _root_paths(directory, int(entry["id"]))
        cert = _one_cert(store.read_file(cert_path, "CA root"), cert_path)
        key = _private_key(store.read_file(key_path, "CA root key"), key_path)
        if certs.fingerprint(cert) != entry.get("fingerprint"):
            raise CaError(f"{cert_path}: not the root {store.STATE} records (fingerprint differs)")
        if not certs.same_public_key(cert, key):
            raise CaError(f"{key_path}: does not match the certificate {cert_path}")
        roots.append(_Root(int(entry["id"]), cert, key, str(entry["state"])))
    if roots and [r.state for r in roots].count(SIGNING) != 1:
        raise CaError(f"{directory / store.STATE}: exactly one root must be signing")
    return roots


def _load_csr_key(csr_pem: bytes) -> ec.EllipticCurvePublicKey | rsa.RSAPublicKey:
    """The CSR's public key, once the CSR proves possession of its private half."""
    if _CSR_PEM not in csr_pem:
        raise CaError("CSR: not PEM (expected a -----BEGIN CERTIFICATE REQUEST----- block)")
    try:
        csr = x509.load_pem_x509_csr(csr_pem)
    except ValueError as exc:
        raise CaError(f"CSR: cannot be parsed ({exc})") from None
    try:
        key = csr.public_key()
    except (ValueError, TypeError) as exc:
        raise CaError(f"CSR: its public key cannot be read ({exc})") from None
    certs.check_workload_key(key, "CSR")
    if not csr.is_signature_valid:
        raise CaError("CSR: its signature does not verify (was it altered after signing?)")
    assert isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey)
    return key


def _one_cert(data: bytes, path: Path) -> x509.Certificate:
    return _certs(data, path)[0]


def _certs(data: bytes, path: Path) -> list[x509.Certificate]:
    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise CaError(f"{path}: no PEM certificate could be read ({exc})") from None


def _private_key(data: bytes, path: Path) -> certs.SigningKey:
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise CaError(f"{path}: the key is encrypted; give remora an unencrypted key") from None
    except ValueError as exc:
        raise CaError(f"{path}: not a PEM private key ({exc})") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise CaError(f"{path}: a {type(key).__name__} cannot sign SVIDs; use an EC or RSA key")
    return key


def _load_operator(
    cert_file: Path, key_file: Path, bundle_file: Path | None, now: float
) -> tuple[x509.Certificate, certs.SigningKey, list[x509.Certificate], list[_Root]]:
    """The operator's signer, its key, the intermediates to send, and the roots to trust."""
    chain = _certs(store.read_file(cert_file, "CA certificate"), cert_file)
    key = _private_key(store.read_file(key_file, "CA key"), key_file)
    signer = chain[0]
    what = f"CA certificate {cert_file}"
    if not certs.same_public_key(signer, key):
        raise CaError(f"CA key {key_file}: does not match the certificate in {cert_file}")
    try:
        constraints = signer.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        constraints = None
    if constraints is None or not constraints.ca:
        raise CaError(f"{what}: not a CA certificate (basicConstraints CA:TRUE is missing)")
    try:
        usage = signer.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        usage = None
    if usage is None or not usage.key_cert_sign:
        raise CaError(f"{what}: may not sign certificates (keyUsage keyCertSign is missing)")
    if now < signer.not_valid_before_utc.timestamp():
        raise CaError(f"{what}: not valid before {signer.not_valid_before_utc.isoformat()}")
    if now >= signer.not_valid_after_utc.timestamp():
        raise CaError(f"{what}: expired on {signer.not_valid_after_utc.isoformat()}")
    for index, (child, parent) in enumerate(itertools.pairwise(chain)):
        if not _issued_by(child, parent):
            raise CaError(
                f"{what}: certificate {index + 1} in the file is not issued by certificate "
                f"{index + 2}; list the chain from the CA certificate up to its root"
            )
    # What a workload sends after its leaf: every CA certificate in the file but a root.
    roots: list[x509.Certificate] = []
    intermediates = chain
    if certs.is_self_signed(chain[-1]):
        roots.append(chain[-1])
        intermediates = chain[:-1]
    if bundle_file is not None:
        extra = _certs(store.read_file(bundle_file, "CA bundle"), bundle_file)
        if not roots and not any(_issued_by(chain[-1], root) for root in extra):
            raise CaError(
                f"CA bundle {bundle_file}: no certificate in it issued the top of {cert_file}"
            )
        seen = {certs.fingerprint(r) for r in roots}
        roots += [r for r in extra if certs.fingerprint(r) not in seen]
    if not roots:
        raise CaError(
            f"{what}: the chain does not end in a self-signed root, so a trust bundle file "
            "(--ca-bundle) with the root it chains to is required"
        )
    top = chain[-1] if roots and chain[-1] is roots[0] else None
    entries = [
        _Root(0, root, None, SIGNING if root is top or _issued_by(chain[-1], root) else TRUSTED)
        for root in roots
    ]
    return signer, key, intermediates, entries


def _issued_by(child: x509.Certificate, parent: x509.Certificate) -> bool:
    try:
        child.verify_directly_issued_by(parent)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True
