"""The benchmark suite's smoke mode against every peer: it must run end to end, fast, and give
sane numbers, so that the suite cannot rot between the rare full runs."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
RUN = REPO / "bench" / "run.py"
DOC = REPO / "docs" / "benchmarks.md"
PROCESS_PEERS = {"remora", "haproxy", "nginx", "caddy", "threads"}
# (scenario, peer) cells that sit out by design; every other cell must have numbers.
SITS_OUT = {
    ("tcp-bulk", "caddy"),
    ("realistic-1k", "threads"),
    ("two-hop-rate-1k", "caddy"),
    ("two-hop-rate-1k", "threads"),
    # The TLS rows: Caddy and the thread-per-connection baseline are not configured for TLS.
    ("tls-keepalive-1k", "caddy"),
    ("tls-keepalive-1k", "threads"),
    ("tls-newconn-1k", "caddy"),
    ("tls-newconn-1k", "threads"),
    # The mTLS pair and its plaintext floor: remora and HAProxy, each against itself.
    *((row, peer) for row in ("two-hop-keepalive-1k", "two-hop-mtls-keepalive-1k")
      for peer in ("nginx", "caddy", "threads")),
}  # fmt: skip


def _doc_state() -> bytes | None:
    return DOC.read_bytes() if DOC.exists() else None


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("bench-smoke")
    doc_before = _doc_state()
    argv = [sys.executable, str(RUN), "--smoke", "--out", str(out)]
    if importlib.util.find_spec("matplotlib") is None:
        argv.append("--no-plots")
    done = subprocess.run(argv, capture_output=True, text=True, timeout=110, cwd=REPO, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert _doc_state() == doc_before, "--smoke --out must not touch docs/benchmarks.md"
    document = json.loads((out / "results" / "latest.json").read_text())
    return out, document


def test_every_scenario_and_peer_ran(smoke: tuple[Path, dict[str, Any]]) -> None:
    _, document = smoke
    assert document["options"]["smoke"] is True
    names = {s["name"] for s in document["scenarios"]}
    assert {"keepalive-1k", "newconn-1k", "keepalive-64k", "rate-1k", "rate-10k"} <= names
    assert {"tcp-bulk", "idle-10k", "realistic-1k", "two-hop-rate-1k"} <= names
    for scenario in document["scenarios"]:
        peers = scenario["peers"]
        assert set(peers) >= PROCESS_PEERS, scenario["name"]
        for name, entry in peers.items():
            where = f"{scenario['name']}/{name}"
            assert "error" not in entry, f"{where}: {entry.get('error')}"
            assert ("skipped" in entry) == ((scenario["name"], name) in SITS_OUT), where
            if "skipped" in entry:
                continue
            summary = entry["summary"]
            assert summary["errors"]["median"] == 0, where
            if scenario["name"].startswith("idle"):
                assert summary["connections"]["median"] == 200, where
                assert summary["kib_per_conn"]["median"] >= 0, where
            else:
                assert summary["rps"]["median"] > 0, where
                assert 0 < summary["p50_us"]["median"] <= summary["p99_us"]["median"], where
            if name in PROCESS_PEERS:
                assert summary["rss_peak_mib"]["median"] > 1, where
                if not scenario["name"].startswith("idle"):
                    assert summary["cpu_s_per_1k"]["median"] > 0, where
            if name == "remora":
                assert set(entry["ratio"].values()) == {1.0}, where
            else:
                assert entry["ratio"], where


def test_open_loop_holds_its_rate(smoke: tuple[Path, dict[str, Any]]) -> None:
    _, document = smoke
    rate = next(s for s in document["scenarios"] if s["name"] == "rate-1k")
    for name, entry in rate["peers"].items():
        run = entry["runs"][0]
        # An open loop offers the scheduled rate whatever the peer does; the peers all keep up here.
        assert run["rps"] == pytest.approx(run["target_rps"], rel=0.1), name
        assert run["p99_us"] >= run["uncorrected_p99_us"] * 0.99, name


def test_realistic_row_logs_every_request(smoke: tuple[Path, dict[str, Any]]) -> None:
    _, document = smoke
    row = next(s for s in document["scenarios"] if s["name"] == "realistic-1k")
    assert row["profile"] == "realistic"
    for name, entry in row["peers"].items():
        if "skipped" in entry:
            continue
        # The runner checked the header, the request id and the log before measuring; the log
        # then received a line for (at least) every request the load completed.
        requests = sum(run["requests"] for run in entry["runs"])
        assert entry["access_log_lines"] >= requests > 0, name


def test_two_hop_row_has_its_floor(smoke: tuple[Path, dict[str, Any]]) -> None:
    _, document = smoke
    row = next(s for s in document["scenarios"] if s["name"] == "two-hop-rate-1k")
    assert row["hops"] == 2
    assert {n for n, e in row["peers"].items() if "summary" in e} == {
        "remora",
        "haproxy",
        "nginx",
        "direct",
    }
    for name, entry in row["peers"].items():
        if "runs" in entry:
            run = entry["runs"][0]
            assert run["rps"] == pytest.approx(run["target_rps"], rel=0.1), name
    # Two proxies' processes are summed: more than one proxy's resident memory.
    one_hop = next(s for s in document["scenarios"] if s["name"] == "rate-1k")
    for name in ("remora", "haproxy", "nginx"):
        two = row["peers"][name]["summary"]["rss_peak_mib"]["median"]
        one = one_hop["peers"][name]["summary"]["rss_peak_mib"]["median"]
        assert two > 1.5 * one, name


def test_report_and_plots_written(smoke: tuple[Path, dict[str, Any]]) -> None:
    out, document = smoke
    text = (out / "benchmarks.md").read_text()
    assert "<!-- proxy-bench:start -->" in text and "<!-- proxy-bench:end -->" in text
    assert document["command"] in text
    assert document["machine"]["kernel"] in text
    for scenario in document["scenarios"]:
        assert f"`{scenario['name']}`" in text
    if importlib.util.find_spec("matplotlib") is not None:
        pngs = sorted(p.name for p in (out / "img").glob("*.png"))
        assert pngs == ["proxy-cost.png", "proxy-latency.png", "proxy-throughput.png"]
        for png in (out / "img").glob("*.png"):
            assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
