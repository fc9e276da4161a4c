"""CertificateAuthority: its directory, the SVIDs it signs (checked by cryptography's verifier
and by real mTLS handshakes), its refusals, operator CAs, and root rotation across restarts."""

from __future__ import annotations

import json
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from remora.xds.ca.authority import CaError, CertificateAuthority
from tests.xds.ca.helpers import (
    Clock,
    Holder,
    cert_pem,
    csr_pem,
    ec_key,
    key_pem,
    mtls,
    operator_ca,
    uri_sans,
)

WEB = "spiffe://cluster.local/ns/default/sa/web"
API = "spiffe://cluster.local/ns/shop/sa/api"


def _verify(chain_pem: bytes, bundle_pem: bytes, clock: Clock | None = None) -> list[str]:
    """The URI SANs of a chain that cryptography's RFC 5280 verifier accepts for client auth."""
    chain = x509.load_pem_x509_certificates(chain_pem)
    builder = PolicyBuilder().store(Store(x509.load_pem_x509_certificates(bundle_pem)))
    if clock is not None:
        import datetime

        builder = builder.time(datetime.datetime.fromtimestamp(clock.now, datetime.UTC))
    verified = builder.build_client_verifier().verify(chain[0], chain[1:])
    return [str(s.value) for s in verified.subjects or []]


def _holder(ca: CertificateAuthority, spiffe_id: str) -> Holder:
    key = ec_key()
    return Holder(key, ca.sign(csr_pem(key), spiffe_id))


def test_first_start_creates_a_private_directory_and_a_restart_loads_the_same_root(
    tmp_path: Path,
) -> None:
    directory = tmp_path / "ca"
    ca = CertificateAuthority.open(directory, "cluster.local")
    assert directory.stat().st_mode & 0o777 == 0o700
    assert (directory / "root-1.key").stat().st_mode & 0o777 == 0o600
    assert not [p for p in directory.iterdir() if p.name.endswith(".tmp")]
    root = x509.load_pem_x509_certificate((directory / "root-1.pem").read_bytes())
    assert root.subject.rfc4514_string() == "CN=remora root cluster.local 1,O=remora"
    assert root.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    usage = root.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.key_cert_sign and usage.crl_sign
    assert isinstance(root.public_key(), ec.EllipticCurvePublicKey)
    lifetime = root.not_valid_after_utc - root.not_valid_before_utc
    assert 3649 <= lifetime.days <= 3651
    state = json.loads((directory / "state.json").read_text())
    assert state["trust_domain"] == "cluster.local"
    assert [r["state"] for r in state["roots"]] == ["signing"]
    key_before = (directory / "root-1.key").read_bytes()

    again = CertificateAuthority.open(directory, "cluster.local")
    assert again.bundle_pem() == ca.bundle_pem() == (directory / "bundle.pem").read_bytes()
    assert (directory / "root-1.key").read_bytes() == key_before
    assert again.signer_fingerprint == ca.signer_fingerprint


def test_a_directory_others_can_read_is_refused(tmp_path: Path) -> None:
    directory = tmp_path / "ca"
    directory.mkdir(mode=0o755)
    directory.chmod(0o755)
    with pytest.raises(CaError, match=r"mode 0755 lets others in"):
        CertificateAuthority.open(directory, "cluster.local")


def test_an_svid_follows_the_x509_svid_profile_and_verifies(tmp_path: Path) -> None:
    clock = Clock()
    ca = CertificateAuthority.open(tmp_path / "ca", "cluster.local", svid_ttl=3600, clock=clock)
    key = ec_key()
    svid = ca.sign(csr_pem(key, cn="admin", dns="evil.example"), WEB)
    assert _verify(svid.chain_pem, svid.bundle_pem) == [WEB]
    leaf = x509.load_pem_x509_certificate(svid.chain_pem)
    assert len(x509.load_pem_x509_certificates(svid.chain_pem)) == 1
    # The identity is the caller's: the CSR's CN and DNS SAN are not in the certificate.
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert list(san.value) == [x509.UniformResourceIdentifier(WEB)] and uri_sans(leaf) == [WEB]
    assert "admin" not in leaf.subject.rfc4514_string()
    constraints = leaf.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and not constraints.value.ca
    usage = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and not usage.key_encipherment and not usage.key_cert_sign
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    leaf.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    aki = leaf.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    root = x509.load_pem_x509_certificate(svid.bundle_pem)
    ski = root.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ski.digest
    assert 0 < leaf.serial_number < 2**159 and leaf.serial_number == svid.serial
    assert svid.not_before == int(clock.now) - 60 == leaf.not_valid_before_utc.timestamp()
    assert svid.not_after == int(clock.now + 3600) == leaf.not_valid_after_utc.timestamp()
    assert svid.signer_fingerprint == ca.signer_fingerprint
    assert leaf.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ) == key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    short = ca.sign(csr_pem(ec_key()), WEB, ttl=60)
    assert short.not_after - short.not_before == 120


def test_two_svids_authenticate_each_other_in_a_real_mtls_handshake(tmp_path: Path) -> None:
    ca = CertificateAuthority.open(tmp_path / "ca", "cluster.local")
    web, api = _holder(ca, WEB), _holder(ca, API)
    assert mtls(web, api, ca.bundle_pem()) == (API, WEB)
    stranger = CertificateAuthority.open(tmp_path / "other", "cluster.local")
    with pytest.raises(ssl.SSLError):
        mtls(web, _holder(stranger, API), ca.bundle_pem())


def test_rsa_keys_of_2048_bits_get_key_encipherment_and_small_or_odd_keys_are_refused(
    tmp_path: Path,
) -> None:
    ca = CertificateAuthority.open(tmp_path / "ca", "cluster.local")
    svid = ca.sign(csr_pem(rsa.generate_private_key(65537, 2048)), WEB)
    usage = x509.load_pem_x509_certificate(svid.chain_pem).extensions.get_extension_for_class(
        x509.KeyUsage
    )
    assert usage.value.key_encipherment and usage.value.digital_signature
    assert _verify(svid.chain_pem, svid.bundle_pem) == [WEB]
    assert ca.sign(csr_pem(ec.generate_private_key(ec.SECP384R1())), WEB).serial
    with pytest.raises(CaError, match=r"CSR: RSA key of 1024 bits, at least 2048 required"):
        ca.sign(csr_pem(rsa.generate_private_key(65537, 1024)), WEB)
    with pytest.raises(CaError, match=r"CSR: EC curve secp521r1 not accepted"):
        ca.sign(csr_pem(ec.generate_private_key(ec.SECP521R1())), WEB)
    with pytest.raises(CaError, match=r"CSR: Ed25519PublicKey not accepted"):
        ca.sign(csr_pem(ed25519.Ed25519PrivateKey.generate()), WEB)


def test_bad_csrs_ids_and_ttls_are_refused_with_what_is_wrong(tmp_path: Path) -> None:
    ca = CertificateAuthority.open(tmp_path / "ca", "cluster.local")
    with pytest.raises(CaError, match=r"CSR: not PEM"):
        ca.sign(b"garbage", WEB)
    with pytest.raises(CaError, match=r"CSR: cannot be parsed"):
        ca.sign(
            b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n", WEB
        )
    der = x509.load_pem_x509_csr(csr_pem(ec_key(), cn="tamper-me-please")).public_bytes(
        serialization.Encoding.DER
    )
    assert der.count(b"tamper-me-please") == 1
    tampered = x509.load_der_x509_csr(der.replace(b"tamper-me-please", b"tamper-me-pleasf"))
    with pytest.raises(CaError, match=r"CSR: its signature does not verify"):
        ca.sign(tampered.public_bytes(serialization.Encoding.PEM), WEB)
    good = csr_pem(ec_key())
    with pytest.raises(CaError, match=r"ttl 9 s is outside \[10 s, 2592000 s"):
        ca.sign(good, WEB, ttl=9)
    with pytest.raises(CaError, match=r"ttl 2592001 s is outside"):
        ca.sign(good, WEB, ttl=30 * 86400 + 1)
    with pytest.raises(CaError, match=r"not in trust domain 'cluster.local'"):
        ca.sign(good, "spiffe://example.org/ns/default/sa/web")
    with pytest.raises(CaError, match=r"must have the path /ns/<namespace>/sa/<account>"):
        ca.sign(good, "spiffe://cluster.local/web")
    with pytest.raises(CaError, match=r"SVID TTL 9 s is outside"):
        CertificateAuthority.open(tmp_path / "ttl", "cluster.local", svid_ttl=9)
    assert ca.status()["issued_total"] == 0


def test_reopening_for_another_trust_domain_is_refused(tmp_path: Path) -> None:
    CertificateAuthority.open(tmp_path / "ca", "cluster.local")
    with pytest.raises(
        CaError, match=r"created for trust domain 'cluster.local', not 'example.org'"
    ):
        CertificateAuthority.open(tmp_path / "ca", "example.org")
    with pytest.raises(CaError, match=r"trust domain 'Bad!' may hold only lowercase"):
        CertificateAuthority.open(tmp_path / "ca2", "Bad!")


# -- an operator's CA ---------------------------------------------------------------------


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_an_operator_root_signs_and_is_the_bundle(tmp_path: Path) -> None:
    root = operator_ca("corp root")
    ca = CertificateAuthority.open(
        tmp_path / "ca", "cluster.local",
        cert_file=_write(tmp_path, "root.pem", cert_pem(root.cert)),
        key_file=_write(tmp_path, "root.key", key_pem(root.key)),
    )  # fmt: skip
    svid = ca.sign(csr_pem(ec_key()), WEB)
    assert svid.bundle_pem == cert_pem(root.cert)
    assert _verify(svid.chain_pem, svid.bundle_pem) == [WEB]
    assert ca.status()["roots"][0]["state"] == "signing"
    assert ca.status()["roots"][0]["unexpired_svids"] == 1
    for step in (ca.prepare_rotation, ca.activate_rotation, ca.withdraw_old):
        with pytest.raises(CaError, match=r"signs with the operator's certificate .*root.pem"):
            step()


def test_an_operator_intermediate_sends_its_chain_and_trusts_its_root(tmp_path: Path) -> None:
    root = operator_ca("corp root")
    middle = operator_ca("corp intermediate", root)
    issuing = operator_ca("corp issuing", middle)
    key_file = _write(tmp_path, "issuing.key", key_pem(issuing.key))
    full = _write(tmp_path, "full.pem", cert_pem(issuing.cert, middle.cert, root.cert))
    ca = CertificateAuthority.open(tmp_path / "ca", "cluster.local", cert_file=full,
                                   key_file=key_file)  # fmt: skip
    svid = ca.sign(csr_pem(ec_key()), WEB)
    chain = x509.load_pem_x509_certificates(svid.chain_pem)
    assert chain[1:] == [issuing.cert, middle.cert]
    assert svid.bundle_pem == cert_pem(root.cert)
    assert _verify(svid.chain_pem, svid.bundle_pem) == [WEB]
    assert [r["unexpired_svids"] for r in ca.status()["roots"]] == [1]
    assert mtls(_holder(ca, WEB), _holder(ca, API), ca.bundle_pem()) == (API, WEB)

    partial = _write(tmp_path, "partial.pem", cert_pem(issuing.cert, middle.cert))
    with pytest.raises(CaError, match=r"partial.pem: the chain does not end in a self-signed "
                       r"root, so a trust bundle file \(--ca-bundle\)"):  # fmt: skip
        CertificateAuthority.open(tmp_path / "ca2", "cluster.local", cert_file=partial,
                                  key_file=key_file)  # fmt: skip
    bundle = _write(tmp_path, "bundle.pem", cert_pem(root.cert))
    ca = CertificateAuthority.open(tmp_path / "ca2", "cluster.local", cert_file=partial,
                                   key_file=key_file, bundle_file=bundle)  # fmt: skip
    assert _verify(ca.sign(csr_pem(ec_key()), WEB).chain_pem, ca.bundle_pem()) == [WEB]
    wrong = _write(tmp_path, "wrong.pem", cert_pem(operator_ca("someone else").cert))
    with pytest.raises(CaError, match=r"wrong.pem: no certificate in it issued the top"):
        CertificateAuthority.open(tmp_path / "ca3", "cluster.local", cert_file=partial,
                                  key_file=key_file, bundle_file=wrong)  # fmt: skip


def test_an_operator_svid_never_outlives_its_signer(tmp_path: Path) -> None:
    root = operator_ca("short-lived root", days=0.5)
    ca = CertificateAuthority.open(
        tmp_path / "ca", "cluster.local", svid_ttl=86400,
        cert_file=_write(tmp_path, "r.pem", cert_pem(root.cert)),
        key_file=_write(tmp_path, "r.key", key_pem(root.key)),
    )  # fmt: skip
    svid = ca.sign(csr_pem(ec_key()), WEB)
    assert svid.not_after == root.cert.not_valid_after_utc.timestamp()


@pytest.mark.parametrize(
    ("problem", "expected"),
    [
        ("key", r"CA key .*op.key: does not match the certificate in .*op.pem"),
        ("not-ca", r"CA certificate .*op.pem: not a CA certificate \(basicConstraints CA:TRUE"),
        ("no-sign", r"CA certificate .*op.pem: may not sign certificates \(keyUsage keyCertSign"),
        ("expired", r"CA certificate .*op.pem: expired on "),
        ("future", r"CA certificate .*op.pem: not valid before "),
        ("garbage", r"op.pem: no PEM certificate could be read"),
        ("keygarbage", r"op.key: not a PEM private key"),
    ],
)
def test_an_unusable_operator_ca_is_refused_naming_the_file(
    tmp_path: Path, problem: str, expected: str
) -> None:
    pki = {
        "not-ca": operator_ca("leaf", ca=False),
        "no-sign": operator_ca("no keyCertSign", key_cert_sign=False),
        "expired": operator_ca("expired", days=-1, start_days=-10),
        "future": operator_ca("future", start_days=1, days=10),
    }.get(problem, operator_ca("ok"))
    cert = b"junk" if problem == "garbage" else cert_pem(pki.cert)
    key = key_pem(ec_key()) if problem == "key" else key_pem(pki.key)
    key = b"junk" if problem == "keygarbage" else key
    with pytest.raises(CaError, match=expected):
        CertificateAuthority.open(tmp_path / "ca", "cluster.local",
                                  cert_file=_write(tmp_path, "op.pem", cert),
                                  key_file=_write(tmp_path, "op.key", key))  # fmt: skip


def test_a_directory_keeps_to_the_kind_of_ca_it_was_made_for(tmp_path: Path) -> None:
    root = operator_ca("corp root")
    cert_file = _write(tmp_path, "r.pem", cert_pem(root.cert))
    key_file = _write(tmp_path, "r.key", key_pem(root.key))
    CertificateAuthority.open(tmp_path / "own", "cluster.local")
    with pytest.raises(CaError, match=r"holds remora's own roots"):
        CertificateAuthority.open(
            tmp_path / "own", "cluster.local", cert_file=cert_file, key_file=key_file
        )
    CertificateAuthority.open(
        tmp_path / "op", "cluster.local", cert_file=cert_file, key_file=key_file
    )
    with pytest.raises(CaError, match=r"holds an operator CA's state"):
        CertificateAuthority.open(tmp_path / "op", "cluster.local")


# -- rotation -----------------------------------------------------------------------------


def _states(ca: CertificateAuthority) -> list[str]:
    return [r["state"] for r in ca.status()["roots"]]


def test_rotation_prepare_activate_withdraw_survives_restarts(tmp_path: Path) -> None:
    clock = Clock()
    directory = tmp_path / "ca"

    def reopen() -> CertificateAuthority:
        return CertificateAuthority.open(directory, "cluster.local", svid_ttl=3600, clock=clock)

    ca = reopen()
    old = _holder(ca, WEB)
    old_root = ca.signer_fingerprint
    with pytest.raises(CaError, match=r"nothing to activate: prepare a rotation first"):
        ca.activate_rotation()
    with pytest.raises(CaError, match=r"no old root to withdraw: prepare and activate"):
        ca.withdraw_old()

    ca.prepare_rotation()
    ca = reopen()
    assert _states(ca) == ["signing", "prepared"]
    assert len(x509.load_pem_x509_certificates(ca.bundle_pem())) == 2
    assert ca.signer_fingerprint == old_root
    still_old = ca.sign(csr_pem(ec_key()), API)
    assert still_old.signer_fingerprint == old_root
    assert len(x509.load_pem_x509_certificates(still_old.bundle_pem)) == 2
    with pytest.raises(CaError, match=r"a rotation is already prepared"):
        ca.prepare_rotation()
    with pytest.raises(CaError, match=r"the prepared root is not active yet"):
        ca.withdraw_old()

    ca.activate_rotation()
    ca = reopen()
    assert _states(ca) == ["trusted", "signing"]
    assert ca.signer_fingerprint != old_root
    new = _holder(ca, API)
    new_root = x509.load_pem_x509_certificates(ca.bundle_pem())[1]
    assert _verify(new.svid.chain_pem, cert_pem(new_root)) == [API]
    with pytest.raises(VerificationError):
        _verify(new.svid.chain_pem, old.svid.bundle_pem)
    # Old-root and new-root SVIDs authenticate each other, either side serving, on both roots.
    assert mtls(old, new, ca.bundle_pem()) == (API, WEB)
    assert mtls(new, old, ca.bundle_pem()) == (WEB, API)
    with pytest.raises(CaError, match=r"previous root .* is still trusted; withdraw it"):
        ca.prepare_rotation()

    with pytest.raises(CaError, match=r"2 unexpired SVID\(s\) signed by the old root"):
        ca.withdraw_old()
    status = ca.status()
    assert [r["unexpired_svids"] for r in status["roots"]] == [2, 1]
    clock.now += 3601
    ca = reopen()
    assert [r["unexpired_svids"] for r in ca.status()["roots"]] == [0, 0]
    ca.withdraw_old()
    ca = reopen()
    assert _states(ca) == ["signing"]
    assert ca.bundle_pem() == cert_pem(new_root) == (directory / "bundle.pem").read_bytes()
    assert not (directory / "root-1.key").exists()
    with pytest.raises(ssl.SSLError):
        mtls(_holder(ca, API), old, ca.bundle_pem())  # the old root is no longer trusted
    ca.prepare_rotation()  # the next rotation may begin
    assert _states(ca) == ["signing", "prepared"]
    assert ca.status()["issued_total"] == 4


def test_a_forced_withdrawal_drops_the_old_root_with_live_svids(tmp_path: Path) -> None:
    ca = CertificateAuthority.open(tmp_path / "ca", "cluster.local")
    _holder(ca, WEB)
    ca.prepare_rotation()
    ca.activate_rotation()
    with pytest.raises(CaError, match=r"1 unexpired SVID"):
        ca.withdraw_old()
    ca.withdraw_old(force=True)
    assert _states(ca) == ["signing"]
    assert ca.status()["unexpired_svids"] == 0
    assert _states(CertificateAuthority.open(tmp_path / "ca", "cluster.local")) == ["signing"]


def test_the_ledger_forgets_expired_svids(tmp_path: Path) -> None:
    clock = Clock()
    ca = CertificateAuthority.open(tmp_path / "ca", "cluster.local", svid_ttl=60, clock=clock)
    ca.sign(csr_pem(ec_key()), WEB)
    clock.now += 3600
    ca.sign(csr_pem(ec_key()), WEB)
    state = json.loads((tmp_path / "ca" / "state.json").read_text())
    assert len(state["issued"]) == 1 and state["issued_total"] == 2


def test_serving_certificates_name_the_hosts_and_chain_to_the_signer(tmp_path: Path) -> None:
    ca = CertificateAuthority.open(tmp_path / "ca", "cluster.local")
    chain, key = ca.serving_certificate(["127.0.0.1", "ca.example"])
    leaf = x509.load_pem_x509_certificate(chain)
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["ca.example"]
    assert [str(a) for a in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    store = Store(x509.load_pem_x509_certificates(ca.bundle_pem()))
    from cryptography.x509 import DNSName

    PolicyBuilder().store(store).build_server_verifier(DNSName("ca.example")).verify(leaf, [])
    assert serialization.load_pem_private_key(key, None)
