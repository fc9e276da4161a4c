"""Run scenarios against peers and collect one results document.

Per scenario: start every peer that supports its mode and profile (fresh, so peak RSS belongs to
this scenario; in a multi-hop scenario, that many instances in series), warm each up, then run the
repeats peer after peer (A B C, A B C, ... with the starting peer rotated each round), so slow
drift on a shared machine spreads over all peers instead of landing on one. Every run also reads
the peer's CPU time and peak RSS from /proc.
"""

from __future__ import annotations

import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from suite import probe, tlscerts
from suite.loads import (
    OPENLOOP_SOURCE,
    IdleConnections,
    LoadError,
    OpenLoop,
    Target,
    connection_limit,
    needed_nofile,
)
from suite.peers import Listener, Peer
from suite.ports import free_ports
from suite.procs import Managed, Proc, ProcessError, ProcGroup
from suite.scenarios import Scenario
from suite.stats import BASELINE, ratios, summarize
from suite.upstream import Upstream, UpstreamSpec

HOST = "127.0.0.1"
EXTRA_KEYS = ("cpu_s_per_1k", "rss_peak_mib")


class SetupError(Exception):
    """A tool the suite needs is missing or could not be built."""


@dataclass(frozen=True)
class Options:
    scenarios: Sequence[Scenario]
    peers: Sequence[Peer]
    duration: float
    repeats: int
    warmup: float
    smoke: bool
    workdir: Path
    proxy_cpu: int | None
    load_cpu: int | None


def raise_nofile(wanted: int) -> int:
    """Raise RLIMIT_NOFILE for us and the peers we start (root may raise the hard limit too)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= wanted:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, max(hard, wanted)))
    except (ValueError, OSError):  # no CAP_SYS_RESOURCE: the hard limit is as far as we go
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def build_openloop(workdir: Path) -> str:
    compiler = shutil.which("cc") or shutil.which("clang") or shutil.which("gcc")
    if compiler is None:
        raise SetupError("no C compiler (cc, clang or gcc) to build bench/loadgen/openloop.c")
    out = workdir / "openloop"
    done = subprocess.run(
        [compiler, "-O2", "-Wall", "-o", str(out), str(OPENLOOP_SOURCE)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SetupError(f"building {OPENLOOP_SOURCE} failed:\n{done.stderr}")
    return str(out)


@dataclass
class _Running:
    peer: Peer
    proc: Proc
    target: Target
    access_log: Path | None = None


class Upstreams:
    """The upstream nginx instances, one per UpstreamSpec the scenarios ask for, each started on
    first use and all stopped at the end."""

    def __init__(self, workdir: Path, cpu: int | None) -> None:
        self.workdir = workdir
        self.cpu = cpu
        self.running: dict[UpstreamSpec, Upstream] = {}

    def get(self, spec: UpstreamSpec) -> Upstream:
        if spec not in self.running:
            upstream = Upstream(self.workdir, self.cpu, HOST, spec, f"upstream-{len(self.running)}")
            upstream.start()
            self.running[spec] = upstream
        return self.running[spec]

    def stop(self) -> None:
        for upstream in self.running.values():
            upstream.stop()


def skip_reason(peer: Peer, scenario: Scenario) -> str | None:
    """Why `peer` sits out `scenario` (shown in its row instead of numbers), or None."""
    if scenario.peers is not None and peer.name not in scenario.peers:
        return scenario.left_out or "not in this scenario"
    return peer.skip_reason(scenario.mode, scenario.profile, scenario.tls, scenario.hop_mtls)


def _start_peer(
    peer: Peer, scenario: Scenario, upstream: Upstream, opts: Options, tools: tuple[str, str]
) -> _Running:
    """Start the peer's instances, the one next to the upstream first; the load goes to hop 1.

    Every instance is pinned to the proxy CPU: with two hops both proxies share it, so the row
    charges the proxy CPU with the cost of both."""
    hops = 1 if peer.calibration_only else scenario.hops
    ports = free_ports(hops, HOST)
    peer_dir = opts.workdir / scenario.name / peer.name
    members: list[Managed] = []
    next_host, next_port = upstream.host, upstream.port
    tls = tlscerts.make(opts.workdir / "tls") if scenario.tls or scenario.hop_mtls else None
    mtls = scenario.hop_mtls and hops > 1
    try:
        for hop in range(hops, 0, -1):
            listener = Listener(
                scenario.mode,
                HOST,
                ports[hop - 1],
                next_host,
                next_port,
                max_connections=connection_limit(scenario.load),
                profile=scenario.profile,
                # The client's side is TLS in the TLS rows; the link between hops in mTLS rows.
                tls=tls if (hop == 1 and scenario.tls) or (mtls and hop > 1) else None,
                client_ca=tls.cert if mtls and hop > 1 and tls is not None else None,
                upstream_tls=tls if mtls and hop < hops else None,
            )
            hop_dir = peer_dir / f"hop{hop}" if hops > 1 else peer_dir
            hop_dir.mkdir(parents=True, exist_ok=True)
            launch = peer.launch(listener, hop_dir)
            name = peer.name if hops == 1 else f"{peer.name} hop {hop}"
            members.append(
                Managed(
                    name,
                    launch.argv,
                    hop_dir / "peer.log",
                    opts.proxy_cpu,
                    launch.env,
                    stdout=launch.stdout,
                )
            )
            next_host, next_port = HOST, ports[hop - 1]
    except BaseException:
        for member in members:
            member.stop()
        raise
    proc: Proc = members[0] if hops == 1 else ProcGroup(peer.name, members)
    port = launch.target_port or ports[0]  # `launch` is hop 1's, the one the client talks to
    target = Target(
        HOST, port, proc, opts.load_cpu, wrk=tools[0], openloop=tools[1], tls=scenario.tls
    )
    return _Running(peer, proc, target, launch.access_log)


def _measure(running: _Running, scenario: Scenario, duration: float) -> dict[str, Any]:
    before = running.proc.usage()
    metrics = scenario.load.run(running.target, duration)
    after = running.proc.usage()
    running.proc.check_alive()
    if not running.peer.process_costs:
        return metrics
    requests = scenario.load.requests_of(metrics)
    if requests > 0 and not scenario.single_run:
        metrics["cpu_s_per_1k"] = (after.cpu_s - before.cpu_s) / requests * 1000
    metrics["cpu_s"] = after.cpu_s - before.cpu_s
    metrics["rss_peak_mib"] = after.hwm_kib / 1024
    return metrics


def run_scenario(
    scenario: Scenario,
    upstreams: Upstreams,
    opts: Options,
    tools: tuple[str, str],
    log: Callable[[str], None],
) -> dict[str, Any]:
    load = scenario.load.smoke() if opts.smoke else scenario.load
    if isinstance(load, IdleConnections):
        fitted = load.fit(resource.getrlimit(resource.RLIMIT_NOFILE)[0])
        if fitted is not load:
            log(f"  RLIMIT_NOFILE allows {fitted.count} idle connections, not {load.count}")
        load = fitted
    scenario = scenario.with_load(load)
    result: dict[str, Any] = {
        "name": scenario.name,
        "title": scenario.title,
        "mode": scenario.mode,
        "profile": scenario.profile,
        "hops": scenario.hops,
        "upstream": scenario.upstream.label,
        "load": load.describe(),
        "metrics": [*load.metrics, *EXTRA_KEYS],
        "peers": {},
    }
    peers_out: dict[str, dict[str, Any]] = result["peers"]
    upstream = upstreams.get(scenario.upstream)
    running: list[_Running] = []
    starting: list[_Running] = []
    try:
        for peer in opts.peers:
            if peer.calibration_only and not isinstance(load, OpenLoop):
                continue
            why = skip_reason(peer, scenario)
            if why is not None:
                peers_out[peer.name] = {"skipped": why}
                continue
            try:
                starting.append(_start_peer(peer, scenario, upstream, opts, tools))
            except OSError as exc:  # a missing binary, an unwritable config
                log(f"  {peer.name}: cannot start: {exc}")
                peers_out[peer.name] = {"error": f"cannot start: {exc}"}
        # All started at once (their start-up overlaps), then each must answer correctly.
        for r in starting:
            try:
                probe.wait_ready(
                    r.proc,
                    HOST,
                    r.target.port,
                    scenario.load_path,
                    scenario.body_bytes,
                    tls=scenario.tls,
                )
                if scenario.profile == "realistic" and not r.peer.calibration_only:
                    seen = probe.check_realistic(
                        r.proc, HOST, r.target.port, scenario.load_path, r.access_log
                    )
                    log(f"  {r.peer.name}: {seen}")
                running.append(r)
            except ProcessError as exc:
                log(f"  {r.peer.name}: failed to start: {exc}")
                peers_out[r.peer.name] = {"error": f"failed to start: {exc}"}
                r.proc.stop()
        runs: dict[str, list[dict[str, Any]]] = {r.peer.name: [] for r in running}
        if not scenario.single_run and opts.warmup > 0:
            for r in running:
                _attempt(r, scenario, opts.warmup, peers_out, log, warm=True)
        repeats = 1 if scenario.single_run else opts.repeats
        for round_no in range(repeats):
            alive = [r for r in running if "error" not in peers_out.get(r.peer.name, {})]
            if not alive:
                break
            shift = round_no % len(alive)
            for r in alive[shift:] + alive[:shift]:
                metrics = _attempt(r, scenario, opts.duration, peers_out, log)
                if metrics is not None:
                    runs[r.peer.name].append(metrics)
                    log(f"  {r.peer.name:8} run {round_no + 1}/{repeats}: {_brief(metrics)}")
        keys = result["metrics"]
        for name, peer_runs in runs.items():
            entry = peers_out.setdefault(name, {})
            entry["runs"] = peer_runs
            entry["summary"] = summarize(peer_runs, keys)
        for r in running:  # what the access log received over the warm-up and all runs
            if r.access_log is not None and r.peer.name in runs:
                peers_out[r.peer.name]["access_log_lines"] = probe.count_lines(r.access_log)
        order = [p.name for p in opts.peers if p.name in peers_out]
        result["peers"] = peers_out = {name: peers_out[name] for name in order}
        baseline = peers_out.get(BASELINE, {}).get("summary")
        for entry in peers_out.values():
            if "summary" in entry:
                entry["ratio"] = ratios(entry["summary"], baseline)
    finally:
        for r in starting:
            r.proc.stop()
    return result


def _attempt(
    running: _Running,
    scenario: Scenario,
    duration: float,
    peers_out: dict[str, dict[str, Any]],
    log: Callable[[str], None],
    warm: bool = False,
) -> dict[str, Any] | None:
    """One run; a failure is recorded against the peer and the suite goes on with the others."""
    try:
        if warm:
            scenario.load.run(running.target, duration)
            return None
        return _measure(running, scenario, duration)
    except (LoadError, ProcessError, OSError) as exc:
        log(f"  {running.peer.name}: {exc}")
        peers_out.setdefault(running.peer.name, {})["error"] = str(exc)
        return None


def _brief(metrics: dict[str, Any]) -> str:
    parts = []
    for key in ("rps", "p99_us", "kib_per_conn", "cpu_s_per_1k", "rss_peak_mib", "errors"):
        if key in metrics:
            parts.append(f"{key}={metrics[key]:.4g}")
    return " ".join(parts)


def run_suite(opts: Options, log: Callable[[str], None]) -> list[dict[str, Any]]:
    wrk = shutil.which("wrk")
    if wrk is None:
        raise SetupError("wrk is not installed (Debian package `wrk`)")
    opts.workdir.mkdir(parents=True, exist_ok=True)
    tools = (wrk, build_openloop(opts.workdir))
    loads = [s.load.smoke() if opts.smoke else s.load for s in opts.scenarios]
    limit = raise_nofile(needed_nofile(loads))
    log(f"RLIMIT_NOFILE {limit}; proxy on cpu {opts.proxy_cpu}, load+upstream on {opts.load_cpu}")
    upstreams = Upstreams(opts.workdir, opts.load_cpu)
    results = []
    try:
        for scenario in opts.scenarios:
            started = time.monotonic()
            log(f"scenario {scenario.name}: {scenario.title}")
            results.append(run_scenario(scenario, upstreams, opts, tools, log))
            log(f"  ({time.monotonic() - started:.1f}s)")
    finally:
        upstreams.stop()
    return results


def default_log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
