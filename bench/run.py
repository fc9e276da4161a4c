#!/usr/bin/env python3
"""Comparative proxy benchmarks: remora against HAProxy, nginx, Caddy and a thread-per-connection
Python proxy, on the same upstream, the same pinned cores and the same load.

    bench/run.py                                   # everything; writes docs/benchmarks.md
    bench/run.py --scenario keepalive-1k --only remora --only haproxy
    bench/run.py --smoke --out /tmp/bench-smoke    # a few seconds per peer; never touches docs/

See bench/README.md for the method.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import shlex
import shutil
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
sys.path.insert(0, str(BENCH_DIR))

from suite import deps, machine  # noqa: E402
from suite.peers import ALL as ALL_PEERS  # noqa: E402
from suite.peers import BY_NAME as PEERS  # noqa: E402
from suite.procs import ProcessError  # noqa: E402
from suite.runner import Options, SetupError, default_log, run_suite  # noqa: E402
from suite.scenarios import BY_NAME as SCENARIOS  # noqa: E402
from suite.scenarios import SCENARIOS as ALL_SCENARIOS  # noqa: E402


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Run the comparative proxy benchmark suite.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="scenarios: " + ", ".join(SCENARIOS) + "\npeers: " + ", ".join(PEERS),
    )
    parser.add_argument(
        "--scenario", action="append", choices=list(SCENARIOS), help="run only these (repeatable)"
    )
    parser.add_argument(
        "--only", action="append", choices=list(PEERS), help="run only these peers (repeatable)"
    )
    parser.add_argument("--smoke", action="store_true", help="a few seconds per peer, 1 repeat")
    parser.add_argument("--duration", type=float, help="seconds per measured run (default 5)")
    parser.add_argument("--repeats", type=int, help="measured runs per peer (default 3)")
    parser.add_argument("--warmup", type=float, help="warm-up seconds per peer (default 1)")
    parser.add_argument(
        "--out",
        type=Path,
        help="write results/, benchmarks.md and img/ here instead of bench/results and docs/ "
        "(--smoke without --out uses a temporary directory)",
    )
    parser.add_argument("--proxy-cpu", type=int, help="CPU for the proxy under test")
    parser.add_argument("--load-cpu", type=int, help="CPU for the load generator and upstream")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    parser.add_argument("--no-install", action="store_true", help="do not apt-get/pip install")
    parser.add_argument(
        "--from-json",
        type=Path,
        metavar="RESULTS",
        help="only re-render the report and plots from a results file (no benchmark run)",
    )
    return parser.parse_args(argv)


def pick_cpus(args: argparse.Namespace) -> tuple[int | None, int | None]:
    """Proxy alone on the first CPU; the load generator and the upstream share the second."""
    cpus = sorted(os.sched_getaffinity(0))
    proxy = args.proxy_cpu if args.proxy_cpu is not None else cpus[0]
    default_load = cpus[1] if len(cpus) > 1 else cpus[0]
    load = args.load_cpu if args.load_cpu is not None else default_load
    return proxy, load


def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds through the runner's cleanup, stopping every peer


def _plots_available(log: Any) -> bool:
    if importlib.util.find_spec("matplotlib") is None:
        log("matplotlib is not installed: no plots (drop --no-install to install it)")
        return False
    return True


def render_only(source: Path, out: Path | None, plots_wanted: bool, install: bool) -> int:
    """Rewrite the report (and plots) from a saved results document, e.g. after a doc change."""
    try:
        document = json.loads(source.read_text())
    except (OSError, ValueError) as exc:
        print(f"error: cannot read results {source}: {exc}", file=sys.stderr)
        return 1
    doc_path = (out / "benchmarks.md") if out else REPO / "docs" / "benchmarks.md"
    img_dir = (out / "img") if out else REPO / "docs" / "img"
    from suite import report

    images: list[str] = []
    if plots_wanted and install:
        deps.ensure_python(default_log)
    if plots_wanted and _plots_available(default_log):
        from suite import plots

        images = plots.write_all(document, img_dir)
    report.write(document, doc_path, [Path(i).name for i in images])
    default_log(f"report: {doc_path} (from {source})")
    return 0


def main(argv: list[str] | None = None) -> int:
    # A background job may inherit SIGINT ignored; both signals must stop the peers we started.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _terminate)
    args = parse_args(argv)
    log = default_log
    scenarios = [SCENARIOS[n] for n in args.scenario] if args.scenario else list(ALL_SCENARIOS)
    peers = [PEERS[n] for n in args.only] if args.only else list(ALL_PEERS)
    smoke = bool(args.smoke)
    duration = args.duration if args.duration is not None else (0.5 if smoke else 5.0)
    repeats = args.repeats if args.repeats is not None else (1 if smoke else 3)
    warmup = args.warmup if args.warmup is not None else (0.0 if smoke else 1.0)
    if duration <= 0 or repeats < 1 or warmup < 0:
        print("error: --duration must be > 0, --repeats >= 1, --warmup >= 0", file=sys.stderr)
        return 2
    out: Path | None = args.out
    if args.from_json is not None:
        return render_only(args.from_json, out, not args.no_plots, not args.no_install)
    if out is None and smoke:
        out = Path(tempfile.mkdtemp(prefix="remora-bench-smoke-"))
    results_dir = (out / "results") if out else BENCH_DIR / "results"
    doc_path = (out / "benchmarks.md") if out else REPO / "docs" / "benchmarks.md"
    img_dir = (out / "img") if out else REPO / "docs" / "img"
    # A partial run (--scenario/--only) must not replace the full results in docs/ and
    # latest.json with a subset: it keeps its JSON and prints its tables instead.
    partial = out is None and bool(args.scenario or args.only)
    want_plots = not args.no_plots and not partial
    if not args.no_install:
        try:
            packages = ["wrk", "nginx-light", "haproxy", "caddy", "util-linux"]
            if any(s.mode == "tcp" for s in scenarios) and PEERS["nginx"] in peers:
                packages.append("libnginx-mod-stream")
            deps.ensure_apt(packages, log)
            if want_plots:
                deps.ensure_python(log)
        except deps.DependencyError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1

    proxy_cpu, load_cpu = pick_cpus(args)
    results_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now(datetime.UTC)
    workdir = Path(tempfile.mkdtemp(prefix="remora-bench-"))
    opts = Options(
        scenarios=scenarios,
        peers=peers,
        duration=duration,
        repeats=repeats,
        warmup=warmup,
        smoke=smoke,
        workdir=workdir,
        proxy_cpu=proxy_cpu,
        load_cpu=load_cpu,
    )
    try:
        scenario_results = run_suite(opts, log)
    except (SetupError, ProcessError) as exc:
        print(f"error: {exc}\n(logs kept in {workdir})", file=sys.stderr)
        return 1
    shutil.rmtree(workdir, ignore_errors=True)
    shown_argv = sys.argv[1:] if argv is None else argv
    document: dict[str, Any] = {
        "suite": "proxy",
        "date": stamp.isoformat(timespec="seconds"),
        "command": shlex.join(["bench/run.py", *shown_argv]),
        "machine": machine.describe(),
        "pinning": {"proxy_cpu": proxy_cpu, "load_and_upstream_cpu": load_cpu},
        "options": {"duration_s": duration, "repeats": repeats, "warmup_s": warmup, "smoke": smoke},
        "peers": {p.name: {"title": p.title, "version": p.version()} for p in peers},
        "scenarios": scenario_results,
    }
    name = stamp.strftime("%Y%m%dT%H%M%SZ") + ("-smoke" if smoke else "") + ".json"
    text = json.dumps(document, indent=1)
    (results_dir / name).write_text(text)
    log(f"results: {results_dir / name}")
    from suite import report

    if partial:
        print(report.section(document, []))
        log("partial run: docs/ and bench/results/latest.json left as they were (use --out)")
        return 0
    (results_dir / "latest.json").write_text(text)

    images: list[str] = []
    if want_plots and _plots_available(log):
        from suite import plots

        images = plots.write_all(document, img_dir)
    report.write(document, doc_path, [Path(i).name for i in images])
    log(f"report: {doc_path}" + (f"; plots in {img_dir}" if images else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
