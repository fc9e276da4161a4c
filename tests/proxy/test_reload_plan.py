"""`plan_reload`, the sans-IO half of a reload: which resources changed, what runs afterwards."""

from __future__ import annotations

import copy
from typing import Any

from remora.config.bootstrap import parse_dict
from remora.config.compile import ProxyConfig, compile_bootstrap
from remora.proxy.reload import plan_reload, unused_loggers
from tests.proxy.harness import bootstrap, cluster, file_access_log, http_listener, tcp_listener


def _compiled(config: dict[str, Any]) -> ProxyConfig:
    return compile_bootstrap(parse_dict(config))


def _base() -> dict[str, Any]:
    return bootstrap(
        [http_listener(), tcp_listener("backend", name="tcp")],
        [cluster("backend", [8080]), cluster("spare", [8081])],
    )


def test_the_same_file_is_no_change_and_keeps_every_running_object() -> None:
    old = _compiled(_base())
    plan = plan_reload(old, _compiled(_base()))
    assert not plan.changed and plan.summary() == "no change" and plan.needs_restart == ()
    assert all(a is b for a, b in zip(plan.config.listeners, old.listeners, strict=True))
    assert all(plan.config.clusters[n] is c for n, c in old.clusters.items())


def test_added_removed_and_changed_resources_are_named() -> None:
    edited = _base()
    resources = edited["static_resources"]
    resources["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]["stat_prefix"] = (
        "v2"
    )
    resources["listeners"][1] = tcp_listener("backend", name="tcp2")
    resources["clusters"] = [cluster("backend", [9090]), cluster("extra", [1])]
    old = _compiled(_base())
    plan = plan_reload(old, _compiled(edited))
    assert plan.changed
    assert plan.summary() == (
        "listeners added tcp2; removed tcp; changed http | "
        "clusters added extra; removed spare; changed backend"
    )
    assert [listener.name for listener in plan.config.listeners] == ["http", "tcp2"]
    assert plan.config.listeners[0] is not old.listeners[0]


def test_admin_dynamic_resources_and_node_are_kept_until_a_restart() -> None:
    old_dict = _base()
    new_dict = copy.deepcopy(old_dict)
    new_dict["admin"]["address"]["socket_address"]["port_value"] = 9999
    new_dict["static_resources"]["clusters"][1] = cluster("spare", [8082])
    old, new = _compiled(old_dict), _compiled(new_dict)
    plan = plan_reload(old, new)
    assert plan.needs_restart == ("admin (127.0.0.1:0 -> 127.0.0.1:9999)",)
    assert plan.summary() == "clusters changed spare"  # the rest is applied
    assert plan.config.admin == old.admin
    assert plan.config.source["admin"] == old.source["admin"]  # /config_dump shows what runs
    assert plan.config.source["static_resources"] == new.source["static_resources"]

    # Without ADS the node identity is unused, so a change to it needs nothing and is taken.
    new_dict["node"] = {"id": "renamed"}
    renamed = plan_reload(old, _compiled(new_dict))
    assert "node" not in " ".join(renamed.needs_restart)
    assert renamed.config.node_id == "renamed" and renamed.config.source["node"]["id"] == "renamed"


def test_loggers_of_the_compiled_file_that_nothing_serves_with_are_found(tmp_path: Any) -> None:
    log = file_access_log(tmp_path / "access.log", "%RESPONSE_CODE%\n")
    config = bootstrap([http_listener(access_log=log)], [cluster("backend", [8080])])
    old, new = _compiled(config), _compiled(config)
    try:
        plan = plan_reload(old, new)
        # The listener is unchanged, so the running one (and its open file) stays; the copy the
        # reload opened is closed by the reloader.
        assert unused_loggers(new, plan.config.listeners) == list(
            new.listeners[0].chains[0].network_filter.access_logs
        )
        assert unused_loggers(old, plan.config.listeners) == []
    finally:
        for compiled in (old, new):
            for logger in compiled.listeners[0].chains[0].network_filter.access_logs:
                logger.close()
