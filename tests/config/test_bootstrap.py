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
    assert _error("static_resources: {clusters: [{type: NOPE}]}") == (
        "static_resources.clusters[0].type: invalid value 'NOPE': expected one of STATIC, "
        "STRICT_DNS, LOGICAL_DNS, EDS, ORIGINAL_DST"
    )
    assert _error("static_resources: {clusters: [{connect_timeout: 5}]}") == (
        "static_resources.clusters[0].connect_timeout: invalid value 5: expected a duration in "
        "seconds with an s suffix, e.g. 1s or 0.25s"
    )
    assert _error("admin: {address: {socket_address: {port_value: '8080x'}}}") == (
        "admin.address.socket_address.port_value: invalid value '8080x': expected an integer "
        "(0-4294967295)"
    )


def test_yaml_and_json_and_empty() -> None:
    assert parse_text('{"admin": {}}').HasField("admin")
    assert not parse_text("").HasField("admin")
    assert "top level must be a mapping" in _error("[1, 2]")
    assert _error("a: [").startswith("<config>:1:5: invalid YAML: ")


def test_yaml_errors_name_the_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "envoy.yaml"
    path.write_text("admin:\n  address: [\n")
    with pytest.raises(ConfigErrors) as info:
        load_file(path)
    assert str(info.value).startswith(f"{path}:3:1: invalid YAML:")
    assert "<unicode string>" not in str(info.value)


def test_every_parse_error_is_listed_with_its_path() -> None:
    with pytest.raises(ConfigErrors) as info:
        parse_text(
            "admin: {address: {socket_address: {port_value: x, adress: y}}}\n"
            "static_resources:\n"
            "  clusters: [{name: a, typo: 1, type: NOPE}, {name: b, connect_timeout: soon}]\n"
        )
    assert [e.path for e in info.value.errors] == [
        "admin.address.socket_address.port_value",
        "admin.address.socket_address.adress",
        "static_resources.clusters[0].typo",
        "static_resources.clusters[0].type",
        "static_resources.clusters[1].connect_timeout",
    ]


def test_every_envoy_type_is_known_so_an_unimplemented_one_is_refused_by_path() -> None:
    from remora.config.compile import compile_bootstrap

    listener = (
        "static_resources: {listeners: [{name: l, address: {socket_address: {address: 127.0.0.1,"
        " port_value: 0}}, filter_chains: [{filters: [{name: f, typed_config: {'@type': "
        "type.googleapis.com/envoy.extensions.filters.network.redis_proxy.v3.RedisProxy}}]}]}]}"
    )
    with pytest.raises(ConfigErrors) as info:
        compile_bootstrap(parse_text(listener))
    assert [str(e) for e in info.value.errors] == [
        "not supported: static_resources.listeners[0].filter_chains[0].filters[0].typed_config "
        "(@type envoy.extensions.filters.network.redis_proxy.v3.RedisProxy)"
    ]


def test_missing_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigErrors) as info:
        load_file(tmp_path / "absent.yaml")
    assert "cannot read" in str(info.value)
