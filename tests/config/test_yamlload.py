"""YAML limits: what an operator's file may use (anchors, deep configs) and what it may not."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from remora.config.bootstrap import load_file
from remora.config.errors import ConfigErrors
from remora.config.yamlload import (
    LIMITS,
    YAMLLimitError,
    YamlLimits,
    load_yaml,
    read_text,
    yaml_error,
)


def _error(text: str, limits: YamlLimits = LIMITS) -> str:
    with pytest.raises(YAMLLimitError) as caught:
        load_yaml(text, "f.yaml", limits)
    return yaml_error(caught.value, "f.yaml")


def test_anchors_reused_as_templates_are_fine() -> None:
    text = "base: &b {connect_timeout: 1s, type: EDS}\n" + "".join(
        f"c{i}: *b\n" for i in range(500)
    )
    data = load_yaml(text, "f.yaml")
    assert data["c499"] == {"connect_timeout": "1s", "type": "EDS"}


def test_nesting_at_the_limit_loads_and_one_more_level_is_refused() -> None:
    limits = YamlLimits(max_depth=40)
    assert load_yaml("[" * 40 + "]" * 40, "f.yaml", limits) is not None
    assert _error("[" * 41 + "]" * 41, limits) == "f.yaml:1:41: nested deeper than 40 levels"
    assert "nested deeper than 128" in _error("a: " + "{b: " * 5000 + "1" + "}" * 5000)


def test_alias_expansion_is_bounded() -> None:
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{n}: &{n} [{', '.join([f'*{p}'] * 10)}]\n"
        for p, n in zip("abcdefgh", "bcdefghi", strict=True)
    )
    assert "aliases expand the document by" in _error(bomb)


@pytest.mark.parametrize("text", ["a: &x [*x]", "a: &x {b: *x}", "a: &x [1, [2, *x]]"])
def test_alias_cycles_are_refused(text: str) -> None:
    assert "a cycle" in _error(text)


def test_size_is_checked_before_reading(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_bytes(b"a: 1\n" + b"#" * 2000)
    with pytest.raises(YAMLLimitError, match="larger than 1000 bytes"):
        read_text(big, YamlLimits(max_bytes=1000))
    assert "larger than 1000 bytes" in _error("a: 1 " + " " * 1000, YamlLimits(max_bytes=1000))


def test_a_limit_error_is_a_yaml_error_with_no_invalid_yaml_prefix() -> None:
    assert issubclass(YAMLLimitError, yaml.YAMLError)
    with pytest.raises(yaml.YAMLError) as caught:
        load_yaml("a: [", "f.yaml")
    assert yaml_error(caught.value, "f.yaml").startswith("f.yaml:1:5: invalid YAML:")


def test_the_proxy_bootstrap_is_held_to_the_limits(tmp_path: Path) -> None:
    config = tmp_path / "deep.yaml"
    config.write_text("static_resources: " + "[" * 3000 + "]" * 3000)
    with pytest.raises(ConfigErrors) as caught:
        load_file(config)
    assert str(caught.value.errors[0]).endswith("nested deeper than 128 levels")


def test_protobuf_surprises_in_a_bootstrap_are_named_errors(tmp_path: Path) -> None:
    config = tmp_path / "odd.yaml"
    config.write_text(
        "static_resources:\n  listeners:\n  - name: l\n"
        "    address: {socket_address: {address: 127.0.0.1, port_value: 1}}\n"
        "    filter_chains: [{filters: [{name: x, typed_config: {'@type': 3}}]}]\n"
    )
    with pytest.raises(ConfigErrors) as caught:
        load_file(config)
    assert "filters[0].typed_config" in str(caught.value)
