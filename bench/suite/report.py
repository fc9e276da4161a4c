"""The Markdown section of docs/benchmarks.md, generated from one results document.

Only the text between the proxy-bench markers is rewritten, so sections that other suites (Wasm,
BPF) or people add around it survive a regeneration.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

START = "<!-- proxy-bench:start -->"
END = "<!-- proxy-bench:end -->"

_DOC_HEAD = """# Benchmarks

Every number in this file is produced by a command shown next to it, on the machine described
there. Regenerate a section with its command; the text between a section's markers is rewritten.

"""

# metric key -> (column title, format for one value)
_COLUMNS: dict[str, tuple[str, str]] = {
    "rps": ("req/s", "{:,.0f}"),
    "mib_s": ("MiB/s", "{:,.1f}"),
    "p50_us": ("P50 µs", "{:,.0f}"),
    "p99_us": ("P99 µs", "{:,.0f}"),
    "p999_us": ("P99.9 µs", "{:,.0f}"),
    "uncorrected_p99_us": ("P99 µs, uncorrected", "{:,.0f}"),
    "errors": ("errors (all runs)", "{:,.0f}"),
    "connections": ("connections", "{:,.0f}"),
    "kib_per_conn": ("KiB / connection", "{:,.1f}"),
    "rss_idle_mib": ("RSS idle MiB", "{:,.1f}"),
    "cpu_s_per_1k": ("CPU s / 1k req", "{:.3f}"),
    "rss_peak_mib": ("peak RSS MiB", "{:,.1f}"),
}

# Ratios worth a column: the metric each scenario is about, plus cost.
_RATIO_KEYS = ("rps", "p99_us", "kib_per_conn", "cpu_s_per_1k", "rss_peak_mib")


def _cell(stats: dict[str, float] | None, fmt: str, show_range: bool) -> str:
    if not stats:
        return "-"
    text = fmt.format(stats["median"])
    if not show_range:
        return text
    if show_range and stats.get("n", 1) > 1 and stats["min"] != stats["max"]:
        text += f" ({fmt.format(stats['min'])}..{fmt.format(stats['max'])})"
    return text


def scenario_table(scenario: dict[str, Any]) -> list[str]:
    keys: list[str] = [k for k in scenario["metrics"] if k in _COLUMNS]
    peers: dict[str, dict[str, Any]] = scenario["peers"]
    if not any("summary" in p for p in peers.values()):
        keys = []
    keys = [k for k in keys if any(k in p.get("summary", {}) for p in peers.values())]
    ratio_keys = [k for k in _RATIO_KEYS if k in keys]
    header = [
        "peer",
        *(_COLUMNS[k][0] for k in keys),
        *(f"{_COLUMNS[k][0]} vs remora" for k in ratio_keys),
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, entry in peers.items():
        if "summary" not in entry:
            why = entry.get("skipped") or entry.get("error", "no result")
            why = why.splitlines()[0][:120] if why else "no result"
            lines.append(f"| {name} | " + " | ".join(["-"] * (len(header) - 2)) + f" | {why} |")
            continue
        summary = entry["summary"]
        cells = [name]
        for key in keys:
            if key == "errors":  # every failed request counts, not the median run's
                stats = summary.get(key)
                cells.append(f"{stats['total']:,.0f}" if stats else "-")
                continue
            show_range = key != "connections"
            cells.append(_cell(summary.get(key), _COLUMNS[key][1], show_range))
        for key in ratio_keys:
            ratio = entry.get("ratio", {}).get(key)
            cells.append(f"{ratio:.2f}" if ratio is not None else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _median(document: dict[str, Any], scenario: str, peer: str, key: str) -> float | None:
    for s in document["scenarios"]:
        if s["name"] == scenario:
            stats = s["peers"].get(peer, {}).get("summary", {}).get(key)
            return float(stats["median"]) if stats else None
    return None


def _first_run(document: dict[str, Any], scenario: str, peer: str, key: str) -> float | None:
    for s in document["scenarios"]:
        if s["name"] == scenario:
            runs = s["peers"].get(peer, {}).get("runs") or [{}]
            value = runs[0].get(key)
            return float(value) if value is not None else None
    return None


def _saturated(document: dict[str, Any], peer: str, achieved: float, target: float | None) -> str:
    """Flag a peer at or near its capacity: its latency at this rate is then mostly queueing."""
    if not target:
        return ""
    if achieved < 0.98 * target:
        return " (saturated: it fell behind the offered rate)"
    ceiling = _median(document, "keepalive-1k", peer, "rps")
    if ceiling is not None and ceiling < 1.2 * target:
        return f" (near saturation: its closed-loop maximum here is {ceiling:,.0f} req/s)"
    return ""


def headlines(document: dict[str, Any]) -> list[str]:
    """Sentences computed from this run's numbers, for the comparisons people ask about."""
    out: list[str] = []
    rps_r = _median(document, "keepalive-1k", "remora", "rps")
    rps_h = _median(document, "keepalive-1k", "haproxy", "rps")
    p99_r = _median(document, "keepalive-1k", "remora", "p99_us")
    p99_h = _median(document, "keepalive-1k", "haproxy", "p99_us")
    if rps_r and rps_h and p99_r and p99_h:
        out.append(
            f"- Keep-alive 1 KiB, 32 connections: remora {rps_r:,.0f} req/s against HAProxy's "
            f"{rps_h:,.0f} (remora/HAProxy = {rps_r / rps_h:.2f}); P99 {p99_r:,.0f} µs against "
            f"{p99_h:,.0f} µs (remora/HAProxy = {p99_r / p99_h:.2f})."
        )
    for rate_name in ("rate-10k", "rate-5k", "rate-1k"):
        p99_r = _median(document, rate_name, "remora", "p99_us")
        p99_t = _median(document, rate_name, "threads", "p99_us")
        got_r = _median(document, rate_name, "remora", "rps")
        got_t = _median(document, rate_name, "threads", "rps")
        floor = _median(document, rate_name, "direct", "p99_us")
        target = _first_run(document, rate_name, "remora", "target_rps")
        if p99_r and p99_t and got_r and got_t:
            out.append(
                f"- {rate_name} (fixed rate, coordinated omission corrected): coroutines (remora) "
                f"P99 {p99_r:,.0f} µs at {got_r:,.0f} req/s achieved"
                f"{_saturated(document, 'remora', got_r, target)}; "
                f"thread-per-connection P99 {p99_t:,.0f} µs at {got_t:,.0f} req/s achieved"
                f"{_saturated(document, 'threads', got_t, target)} "
                f"(threads/coroutines = {p99_t / p99_r:.2f})"
                + (f"; no proxy at all: P99 {floor:,.0f} µs." if floor else ".")
            )
    kib_r = _median(document, "idle-10k", "remora", "kib_per_conn")
    kib_t = _median(document, "idle-10k", "threads", "kib_per_conn")
    if kib_r is not None and kib_t is not None:
        out.append(
            f"- Idle connections: remora grows {kib_r:.1f} KiB per connection, "
            f"thread-per-connection {kib_t:.1f} KiB."
        )
    return out


def section(document: dict[str, Any], images: list[str]) -> str:
    m = document["machine"]
    opts = document["options"]
    pin = document["pinning"]
    lines = [
        START,
        "## Proxy suite: remora, HAProxy, nginx, Caddy, thread-per-connection",
        "",
        f"Generated by `{document['command']}` on {document['date']}.",
        "",
        f"Machine: {m['cores']} cores ({m['cpu_model']}), Linux {m['kernel']}, "
        f"{m['memory_gib']} GiB, Python {m['python']}. Pinning: the proxy under test on CPU "
        f"{pin['proxy_cpu']}; the load generator and the upstream nginx on CPU "
        f"{pin['load_and_upstream_cpu']}.",
        "",
        f"Each cell is the median of {opts['repeats']} run(s) of {opts['duration_s']:g} s "
        f"(min..max in brackets) after a {opts['warmup_s']:g} s warm-up per peer; peers alternate "
        "run by run. `vs remora` is the peer's median divided by remora's from the same run "
        "(above 1: more throughput, or more latency/CPU/memory than remora). CPU is the proxy's "
        "user+system "
        "time per 1,000 requests; peak RSS is VmHWM summed over the proxy's processes. "
        "Method: [bench/README.md](../bench/README.md).",
        "",
    ]
    if opts.get("smoke"):
        lines += ["**Smoke run: durations too short for the numbers to mean anything.**", ""]
    heads = headlines(document)
    if heads:
        lines += ["### Headlines", "", *heads, ""]
    lines += ["### Peers", "", "| peer | what | version |", "|---|---|---|"]
    for name, peer in document["peers"].items():
        lines.append(f"| {name} | {peer['title']} | {peer['version']} |")
    lines.append("")
    for scenario in document["scenarios"]:
        lines += [
            f"### {scenario['title']}",
            "",
            f"`{scenario['name']}`: {scenario['load']}.",
            "",
            *scenario_table(scenario),
            "",
        ]
    for image in images:
        lines += [f"![{image}](img/{image})", ""]
    lines.append(END)
    return "\n".join(lines) + "\n"


def write(document: dict[str, Any], path: Path, images: list[str]) -> None:
    """Replace the marked section of `path`, or create the file with it."""
    text = section(document, images)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        old = path.read_text()
        if START in old and END in old:
            before, _, rest = old.partition(START)
            _, _, after = rest.partition(END)
            path.write_text(before + text.rstrip("\n") + after)
            return
        path.write_text(old.rstrip("\n") + "\n\n" + text)
        return
    path.write_text(_DOC_HEAD + text)
