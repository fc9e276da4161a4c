"""PNG plots of a results document (matplotlib, Agg backend: no display needed).

One figure per question: how fast (throughput), how long at a fixed rate (latency percentiles), and
what it costs (CPU per request, memory per idle connection). Bars are medians, whiskers min-max.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

_COLORS = {
    "remora": "#2a7ab0",
    "haproxy": "#7f7f7f",
    "nginx": "#3a9a48",
    "caddy": "#d9892b",
    "threads": "#b03a3a",
}


def _scenarios(document: dict[str, Any], *, metric: str) -> list[dict[str, Any]]:
    return [
        s
        for s in document["scenarios"]
        if any(metric in p.get("summary", {}) for p in s["peers"].values())
    ]


def _bars(ax: Any, scenario: dict[str, Any], metric: str, title: str, ylabel: str) -> None:
    names, medians, low, high = [], [], [], []
    for name, entry in scenario["peers"].items():
        stats = entry.get("summary", {}).get(metric)
        if not stats:
            continue
        names.append(name)
        medians.append(stats["median"])
        low.append(stats["median"] - stats["min"])
        high.append(stats["max"] - stats["median"])
    ax.bar(
        names,
        medians,
        yerr=[low, high],
        capsize=3,
        color=[_COLORS.get(n, "#555555") for n in names],
    )
    ax.set_title(title, fontsize=9)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.tick_params(axis="x", labelsize=7, rotation=30)
    ax.tick_params(axis="y", labelsize=7)


def _grid(count: int) -> tuple[Any, list[Any]]:
    cols = min(count, 3)
    rows = (count + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.2 * rows), squeeze=False)
    flat = [ax for row in axes for ax in row]
    for ax in flat[count:]:
        ax.set_visible(False)
    return fig, flat[:count]


def _save(fig: Any, document: dict[str, Any], title: str, path: Path) -> str:
    m = document["machine"]
    fig.suptitle(
        f"{title}\n{document['date']}, {m['cores']} cores, Linux {m['kernel']}", fontsize=10
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path)


def throughput(document: dict[str, Any], path: Path) -> str | None:
    scenarios = [s for s in _scenarios(document, metric="rps") if "mib_s" in s["metrics"]]
    if not scenarios:
        return None
    fig, axes = _grid(len(scenarios))
    for ax, scenario in zip(axes, scenarios, strict=True):
        metric, unit = ("mib_s", "MiB/s") if scenario["mode"] == "tcp" else ("rps", "req/s")
        _bars(ax, scenario, metric, scenario["name"], unit)
    return _save(fig, document, "Closed-loop throughput (wrk), higher is better", path)


def latency(document: dict[str, Any], path: Path) -> str | None:
    scenarios = [s for s in _scenarios(document, metric="p99_us") if "mib_s" not in s["metrics"]]
    if not scenarios:
        return None
    fig, axes = _grid(len(scenarios))
    width = 0.27
    for ax, scenario in zip(axes, scenarios, strict=True):
        names = [n for n, e in scenario["peers"].items() if "p99_us" in e.get("summary", {})]
        for i, (key, label) in enumerate(
            (("p50_us", "P50"), ("p99_us", "P99"), ("p999_us", "P99.9"))
        ):
            values = [scenario["peers"][n]["summary"][key]["median"] for n in names]
            xs = [j + (i - 1) * width for j in range(len(names))]
            ax.bar(xs, values, width, label=label)
        ax.set_xticks(range(len(names)), names, fontsize=7, rotation=30)
        ax.set_yscale("log")
        ax.set_ylabel("µs (log)", fontsize=8)
        ax.set_title(scenario["name"] + " (CO-corrected)", fontsize=9)
        ax.tick_params(axis="y", labelsize=7)
        ax.legend(fontsize=7)
    return _save(fig, document, "Open-loop latency at a fixed rate, lower is better", path)


def cost(document: dict[str, Any], path: Path) -> str | None:
    panels: list[tuple[dict[str, Any], str, str, str]] = []
    for scenario in _scenarios(document, metric="cpu_s_per_1k"):
        if scenario["name"] == "keepalive-1k":
            panels.append(
                (scenario, "cpu_s_per_1k", "CPU per request (keepalive-1k)", "CPU s / 1k req")
            )
            panels.append((scenario, "rss_peak_mib", "peak RSS (keepalive-1k)", "MiB"))
    for scenario in _scenarios(document, metric="kib_per_conn"):
        panels.append(
            (scenario, "kib_per_conn", f"memory per idle connection ({scenario['name']})", "KiB")
        )
    if not panels:
        return None
    fig, axes = _grid(len(panels))
    for ax, (scenario, metric, title, unit) in zip(axes, panels, strict=True):
        _bars(ax, scenario, metric, title, unit)
    return _save(fig, document, "Cost, lower is better", path)


def write_all(document: dict[str, Any], img_dir: Path) -> list[str]:
    img_dir.mkdir(parents=True, exist_ok=True)
    written = [
        throughput(document, img_dir / "proxy-throughput.png"),
        latency(document, img_dir / "proxy-latency.png"),
        cost(document, img_dir / "proxy-cost.png"),
    ]
    return [p for p in written if p is not None]
