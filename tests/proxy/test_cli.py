"""`remora proxy --validate` behaves like `envoy --mode validate`."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

from tests.proxy.harness import bootstrap, cluster, http_listener, tcp_listener
from tests.proxy.procs import unique_base_id


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
    config = bootstrap([listener], [cluster("backend", [8080], lb_policy="CLUSTER_PROVIDED")])
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


def test_validate_lists_every_independent_error_once(tmp_path: Path) -> None:
    config = (
        "static_resources:\n"
        "  listeners:\n"
        "  - name: ingress\n"
        "    address: {socket_address: {address: 999.1.1.1, port_value: '8080x'}}\n"
        "    filter_chains: [{filters: [{name: t, typed_config: {'@type': type.googleapis.com/"
        "envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, stat_prefix: t, cluster: c}}]}]\n"
        "  clusters: [{name: c, type: LOGICAL_DNS, conect_timeout: 1s}]\n"
    )
    result = _validate(tmp_path, config)
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert lines[1:] == [
        "  static_resources.listeners[0].address.socket_address.port_value: invalid value "
        "'8080x': expected an integer (0-4294967295)",
        "  static_resources.clusters[0].conect_timeout: unknown field 'conect_timeout' in "
        "envoy.config.cluster.v3.Cluster",
        "  not supported: static_resources.clusters[0].type (LOGICAL_DNS)",
        "  static_resources.listeners[0].address.socket_address.address: '999.1.1.1' is not an "
        "IP address (names are resolved only for STRICT_DNS cluster endpoints)",
        "4 errors",
    ]


def test_a_bind_failure_names_the_listener_or_the_admin(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        for admin in (False, True):
            config = bootstrap([tcp_listener("c", name="ingress")], [cluster("c", [1])])
            address = {"socket_address": {"address": "127.0.0.1", "port_value": port}}
            if admin:
                config["admin"] = {"address": address}
            else:
                config["static_resources"]["listeners"][0]["address"] = address  # type: ignore[index]
                config.pop("admin")
            path = tmp_path / "bootstrap.json"
            path.write_text(json.dumps(config))
            result = subprocess.run(
                [sys.executable, "-m", "remora", "proxy", "-c", str(path), "-l", "error",
                 "--base-id", unique_base_id()],
                capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            assert result.returncode == 1
            who = "admin" if admin else "listener 'ingress'"
            assert result.stderr == (
                f"error: {who} cannot bind 127.0.0.1:{port}: Address already in use\n"
            )
