"""`remora proxy --validate` behaves like `envoy --mode validate`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.proxy.harness import bootstrap, cluster, http_listener


def _validate(tmp_path: Path, config: dict[str, object] | str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "bootstrap.yaml"
    path.write_text(config if isinstance(config, str) else json.dumps(config))
    return subprocess.run(
        [sys.executable, "-m", "remora", "proxy", "--validate", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_valid_config_exits_zero(tmp_path: Path) -> None:
    result = _validate(tmp_path, bootstrap([http_listener()], [cluster("backend", [8080])]))
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout


def test_misspelled_field_is_named_with_its_path(tmp_path: Path) -> None:
    config = bootstrap([http_listener()], [cluster("backend", [8080])])
    config["static_resources"]["clusters"][0]["conect_timeout"] = "1s"  # type: ignore[index]
    result = _validate(tmp_path, config)
    assert result.returncode == 1
    assert "static_resources.clusters[0].conect_timeout" in result.stderr


def test_every_error_is_listed(tmp_path: Path) -> None:
    listener = http_listener(routes=[{"match": {"prefix": "/"}, "route": {"cluster": "missing"}}])
    config = bootstrap([listener], [cluster("backend", [8080], lb_policy="MAGLEV")])
    result = _validate(tmp_path, config)
    assert result.returncode == 1
    assert "static_resources.clusters[0].lb_policy" in result.stderr
    assert "unknown cluster 'missing'" in result.stderr


def test_unsupported_field_is_rejected_not_ignored(tmp_path: Path) -> None:
    config = bootstrap([http_listener(add_user_agent=True)], [cluster("backend", [8080])])
    result = _validate(tmp_path, config)
    assert result.returncode == 1
    assert (
        "not supported: static_resources.listeners[0].filter_chains[0].filters[0]"
        ".typed_config.add_user_agent" in result.stderr
    )


def test_yaml_syntax_error(tmp_path: Path) -> None:
    result = _validate(tmp_path, "static_resources: [unclosed")
    assert result.returncode == 1
    assert "invalid YAML" in result.stderr
