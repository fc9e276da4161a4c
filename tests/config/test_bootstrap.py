import pytest

from remora.config.bootstrap import load_file, parse_text
from remora.config.errors import ConfigErrors


def _error(text: str) -> str:
    with pytest.raises(ConfigErrors) as info:
        parse_text(text)
    assert len(info.value.errors) == 1
    return str(info.value.errors[0])


def test_unknown_field_names_its_path() -> None:
    message = _error("admin: {address: {socket_address: {adress: x}}}")
    assert message.startswith("admin.address.socket_address.adress: unknown field 'adress'")


def test_typed_config_is_resolved_by_type() -> None:
    text = """
static_resources:
  listeners:
  - name: l
    filter_chains:
    - filters:
      - name: t
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefx: x
"""
    message = _error(text)
    assert message.startswith(
        "static_resources.listeners[0].filter_chains[0].filters[0].typed_config.stat_prefx:"
    )


def test_unknown_type_url_and_bad_values() -> None:
    assert "foo.Bar" in _error(
        "static_resources: {listeners: [{filter_chains: [{filters: [{typed_config: "
        '{"@type": type.googleapis.com/foo.Bar}}]}]}]}'
    )
    assert _error("static_resources: {clusters: [{type: NOPE}]}").startswith(
        "static_resources.clusters[0].type: Invalid enum value NOPE"
    )
    assert "Duration" in _error("static_resources: {clusters: [{connect_timeout: 5}]}")


def test_yaml_and_json_and_empty() -> None:
    assert parse_text('{"admin": {}}').HasField("admin")
    assert not parse_text("").HasField("admin")
    assert "top level must be a mapping" in _error("[1, 2]")
    assert "invalid YAML" in _error("a: [")


def test_missing_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigErrors) as info:
        load_file(tmp_path / "absent.yaml")
    assert "cannot read" in str(info.value)
