"""Regenerating the proxy section must leave the rest of docs/benchmarks.md alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from suite import report


def _document() -> dict[str, Any]:
    summary = {"rps": {"median": 200.0, "min": 190.0, "max": 210.0, "n": 3.0}}
    return {
        "command": "bench/run.py --scenario keepalive-1k",
        "date": "2026-01-01T00:00:00+00:00",
        "machine": {
            "cores": 2,
            "cpu_model": "cpu",
            "kernel": "6.0-test",
            "memory_gib": 1.0,
            "python": "3.11",
        },
        "pinning": {"proxy_cpu": 0, "load_and_upstream_cpu": 1},
        "options": {"duration_s": 5.0, "repeats": 3, "warmup_s": 1.0, "smoke": False},
        "peers": {
            "remora": {"title": "r", "version": "1"},
            "caddy": {"title": "c", "version": "2"},
        },
        "scenarios": [
            {
                "name": "keepalive-1k",
                "title": "Keep-alive",
                "mode": "http",
                "load": "wrk",
                "metrics": ["rps"],
                "peers": {
                    "remora": {"summary": summary, "ratio": {"rps": 1.0}},
                    "caddy": {"skipped": "no TCP proxy"},
                },
            }
        ],
    }


def test_section_replaced_between_markers(tmp_path: Path) -> None:
    path = tmp_path / "benchmarks.md"
    path.write_text(f"# B\n\nintro\n\n{report.START}\nold numbers\n{report.END}\n\n## Wasm\nkept\n")
    report.write(_document(), path, ["proxy-throughput.png"])
    text = path.read_text()
    assert text.startswith("# B\n\nintro\n\n" + report.START)
    assert text.endswith(report.END + "\n\n## Wasm\nkept\n")
    assert "old numbers" not in text
    assert "| remora | 200 (190..210) | 1.00 |" in text
    assert "| caddy | - | no TCP proxy |" in text
    assert "![proxy-throughput.png](img/proxy-throughput.png)" in text
    report.write(_document(), path, [])  # idempotent apart from content
    assert path.read_text().count(report.START) == 1


def test_file_created_when_missing(tmp_path: Path) -> None:
    path = tmp_path / "docs" / "benchmarks.md"
    report.write(_document(), path, [])
    text = path.read_text()
    assert text.startswith("# Benchmarks")
    assert "bench/run.py --scenario keepalive-1k" in text and "6.0-test" in text


def _stats(value: float) -> dict[str, float]:
    return {"median": value, "min": value, "max": value, "total": value, "n": 1.0}


def _new_rows_document() -> dict[str, Any]:
    document = _document()

    def peer(rps: float, p99: float, **extra: Any) -> dict[str, Any]:
        summary = {"rps": _stats(rps), "p99_us": _stats(p99), "errors": _stats(0)}
        return {"summary": summary, "runs": [{"target_rps": 1000.0}], "ratio": {}, **extra}

    document["scenarios"] = [
        {
            "name": "keepalive-1k",
            "title": "Keep-alive",
            "mode": "http",
            "load": "wrk",
            "metrics": ["rps", "p99_us", "errors"],
            "peers": {"remora": peer(20_000, 900), "haproxy": peer(25_000, 700)},
        },
        {
            "name": "realistic-1k",
            "title": "Realistic",
            "mode": "http",
            "profile": "realistic",
            "hops": 1,
            "upstream": "nginx's default keepalive_requests (1000), echoes x-request-id",
            "load": "wrk",
            "metrics": ["rps", "p99_us", "errors"],
            "peers": {
                "remora": peer(15_000, 1000, access_log_lines=75_123),
                "haproxy": peer(20_000, 800, access_log_lines=100_456),
                "threads": {"skipped": "a bare forwarder"},
            },
        },
        {
            "name": "two-hop-rate-1k",
            "title": "Two hops",
            "mode": "http",
            "profile": "minimal",
            "hops": 2,
            "upstream": "keepalive_requests 100,000,000",
            "load": "openloop",
            "metrics": ["rps", "p99_us", "errors"],
            "peers": {
                "remora": peer(1000, 1350),
                "haproxy": peer(1000, 400),
                "direct": peer(1000, 100),
                "caddy": {"skipped": "not in this row"},
            },
        },
    ]
    return document


def test_new_rows_headlines_and_columns() -> None:
    text = report.section(_new_rows_document(), [])
    realistic = (
        "remora 15,000 req/s against HAProxy's 20,000 (remora/HAProxy = 0.75; issue 20's target: "
        "0.7 or more); of its keepalive-1k throughput each keeps remora 75%, HAProxy 80%."
    )
    two_hops = "at 1,000 req/s, P99 added over direct (both proxies on one CPU): remora +1.250 ms"
    assert realistic in text
    assert two_hops + ", HAProxy +0.300 ms (direct's own P99: 0.100 ms)" in text
    assert "Istio publishes +0.298 ms" in text
    # The two-hop table: P99 minus direct's, none for direct itself; skipped peers say why.
    assert "| remora | 1,000 | 1,350 | 0 | +1,250 |" in text
    assert "| direct | 1,000 | 100 | 0 | - |" in text
    assert "| caddy | - | - | - | - | - | not in this row |" in text
    assert "client → hop 1 → hop 2 → upstream" in text
    # The realistic table shows what the access logs received, and says what each peer runs.
    assert "| haproxy | 20,000 | 800 | 0 | 100,456 |" in text
    assert "| threads | - | - | - | - | - | a bare forwarder |" in text
    assert "`unique-id-format %[uuid()]`" in text
    assert "It closes each connection after 1,000 requests" in text
