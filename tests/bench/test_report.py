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
