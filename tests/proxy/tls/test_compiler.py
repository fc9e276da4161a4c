"""Every bad TLS config is a config error naming its field, found before anything serves."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pytest

from remora.config.bootstrap import parse_dict
from remora.config.compile import compile_bootstrap
from remora.config.errors import ConfigErrors
from tests.proxy.harness import bootstrap, cluster, http_listener
from tests.proxy.tls import tlsconfig
from tests.proxy.tls.pki import Authority, expired

SYSTEM_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
CHAIN = "static_resources.listeners[0].filter_chains[0].transport_socket"
COMMON = f"{CHAIN}.typed_config.common_tls_context"


def errors_of(listener_socket: dict[str, Any] | None, cluster_socket: Any = None) -> list[str]:
    listener = http_listener()
    if listener_socket is not None:
        tlsconfig.with_tls(listener, listener_socket)
    extra = {} if cluster_socket is None else {"transport_socket": cluster_socket}
    config = bootstrap([listener], [cluster("backend", [1], **extra)])
    with pytest.raises(ConfigErrors) as info:
        compile_bootstrap(parse_dict(config))
    return [str(error) for error in info.value.errors]


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    ca = Authority()
    good_cert, good_key = ca.issue().write(tmp_path, "good")
    _, other_key = ca.issue().write(tmp_path, "other")
    old_cert, old_key = expired(ca).write(tmp_path, "old")
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    return {
        "ca": ca.write(tmp_path),
        "cert": good_cert,
        "key": good_key,
        "other_key": other_key,
        "old_cert": old_cert,
        "old_key": old_key,
        "garbage": garbage,
        "missing": tmp_path / "nope.pem",
    }


def test_a_missing_file_names_the_field(files: dict[str, Path]) -> None:
    found = errors_of(tlsconfig.downstream(cert=files["missing"], key=files["key"]))
    assert found == [
        f"{COMMON}.tls_certificates[0].certificate_chain.filename: "
        f"cannot read {files['missing']}: No such file or directory"
    ]


def test_garbage_pem_is_refused(files: dict[str, Path]) -> None:
    found = errors_of(tlsconfig.downstream(cert=files["garbage"], key=files["key"]))
    assert len(found) == 1
    assert found[0].startswith(f"{COMMON}.tls_certificates[0].certificate_chain: not a PEM")
    found = errors_of(tlsconfig.downstream(cert=files["cert"], key=files["garbage"]))
    assert found[0].startswith(f"{COMMON}.tls_certificates[0].private_key: not a usable PEM")


def test_a_key_that_is_not_the_certificates_is_refused(files: dict[str, Path]) -> None:
    found = errors_of(tlsconfig.downstream(cert=files["cert"], key=files["other_key"]))
    assert len(found) == 1
    assert found[0].startswith(
        f"{COMMON}.tls_certificates[0].private_key: the private key does not match"
    )


def test_an_expired_certificate_is_refused(files: dict[str, Path]) -> None:
    found = errors_of(tlsconfig.downstream(cert=files["old_cert"], key=files["old_key"]))
    assert len(found) == 1
    assert "the certificate expired at" in found[0]


def test_a_listener_needs_a_certificate() -> None:
    found = errors_of(tlsconfig.downstream())
    assert found == [f"{COMMON}.tls_certificates: a listener's TLS context needs a certificate"]


def test_requiring_client_certificates_needs_a_ca(files: dict[str, Path]) -> None:
    found = errors_of(
        tlsconfig.downstream(require_client_certificate=True, cert=files["cert"], key=files["key"])
    )
    assert len(found) == 1
    assert found[0].startswith(f"{CHAIN}.typed_config.require_client_certificate: ")


def test_tls_params_are_checked(files: dict[str, Path]) -> None:
    params = {
        "tls_minimum_protocol_version": "TLSv1_3",
        "tls_maximum_protocol_version": "TLSv1_2",
    }
    found = errors_of(tlsconfig.downstream(cert=files["cert"], key=files["key"], tls_params=params))
    assert found == [
        f"{COMMON}.tls_params.tls_minimum_protocol_version: "
        "the minimum (TLSv1_3) is above the maximum (TLSv1_2)"
    ]
    for params, field in [
        ({"cipher_suites": ["NOT-A-CIPHER"]}, "cipher_suites"),
        ({"ecdh_curves": ["X25519", "P-256"]}, "ecdh_curves"),
        ({"ecdh_curves": ["no-such-curve"]}, "ecdh_curves[0]"),
    ]:
        found = errors_of(
            tlsconfig.downstream(cert=files["cert"], key=files["key"], tls_params=params)
        )
        assert len(found) == 1 and found[0].startswith(f"{COMMON}.tls_params.{field}: "), found


def test_pins_and_matchers_are_checked(files: dict[str, Path]) -> None:
    validation = {
        "trusted_ca": {"filename": str(files["ca"])},
        "verify_certificate_hash": ["abc"],
        "verify_certificate_spki": ["not base64!"],
        "match_typed_subject_alt_names": [{"san_type": "OTHER_NAME", "matcher": {"exact": "x"}}],
    }
    found = errors_of(
        tlsconfig.downstream(cert=files["cert"], key=files["key"], validation_context=validation)
    )
    prefix = f"{COMMON}.validation_context"
    assert [line.split(": ", 1)[0] for line in found] == [
        f"{prefix}.verify_certificate_hash[0]",
        f"{prefix}.verify_certificate_spki[0]",
        f"{prefix}.match_typed_subject_alt_names[0].san_type",
    ]


def test_unsupported_fields_and_wrong_types_are_named(files: dict[str, Path]) -> None:
    socket = tlsconfig.downstream(cert=files["cert"], key=files["key"])
    socket["typed_config"]["session_timeout"] = "10s"
    assert errors_of(socket) == [f"not supported: {CHAIN}.typed_config.session_timeout"]
    wrong = tlsconfig.upstream()
    cluster_path = "static_resources.clusters[0].transport_socket.typed_config"
    found = errors_of(wrong)
    assert len(found) == 1 and found[0].startswith(f"{CHAIN}.typed_config: expected @type")
    found = errors_of(None, tlsconfig.upstream(sni="bad name!"))
    assert found == [f"{cluster_path}.sni: not a valid server name: 'bad name!'"]


def test_inline_and_environment_sources_load(
    files: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REMORA_TEST_KEY", files["key"].read_text())
    socket = tlsconfig.downstream()
    socket["typed_config"]["common_tls_context"]["tls_certificates"] = [
        {
            "certificate_chain": {"inline_string": files["cert"].read_text()},
            "private_key": {"environment_variable": "REMORA_TEST_KEY"},
        }
    ]
    listener = tlsconfig.with_tls(http_listener(), socket)
    config = compile_bootstrap(parse_dict(bootstrap([listener], [cluster("backend", [1])])))
    tls = config.listeners[0].chains[0].tls
    assert tls is not None and tls.server_side
    assert tls.certificates[0].dns_sans == ("localhost",)
    monkeypatch.delenv("REMORA_TEST_KEY")
    found = errors_of(socket)
    assert found == [
        f"{COMMON}.tls_certificates[0].private_key.environment_variable: "
        "environment variable 'REMORA_TEST_KEY' is not set"
    ]


@pytest.mark.skipif(not Path(SYSTEM_BUNDLE).exists(), reason=f"no {SYSTEM_BUNDLE}")
def test_the_system_bundle_loads_without_a_warning() -> None:
    socket = tlsconfig.upstream(sni="example.com", ca=Path(SYSTEM_BUNDLE))
    config = bootstrap([http_listener()], [cluster("backend", [1], transport_socket=socket)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # cryptography warns about old roots' serial numbers
        compiled = compile_bootstrap(parse_dict(config))
    tls = compiled.clusters["backend"].tls
    assert tls is not None and len(tls.trusted_ca) > 50


def test_a_bad_chain_and_a_missing_inspector_are_reported_together(
    files: dict[str, Path],
) -> None:
    socket = tlsconfig.downstream(cert=files["missing"], key=files["key"])
    listener = tlsconfig.with_tls(http_listener(), socket)
    listener["filter_chains"][0]["filter_chain_match"] = {"server_names": ["a.test"]}
    with pytest.raises(ConfigErrors) as info:
        compile_bootstrap(parse_dict(bootstrap([listener], [cluster("backend", [1])])))
    found = [str(error) for error in info.value.errors]
    assert any("cannot read" in line for line in found), found
    assert any("add the envoy.filters.listener.tls_inspector" in line for line in found), found
