"""Control-plane counters, rendered in the Prometheus text format for `/metrics`."""

from __future__ import annotations

from collections import Counter


class ControlPlaneStats:
    def __init__(self) -> None:
        self.counters: Counter[tuple[str, str]] = Counter()  # (metric, type label)
        self.streams_active = 0
        self.snapshots_applied = 0
        self.source_errors = 0

    def inc(self, metric: str, type_url: str = "", amount: int = 1) -> None:
        self.counters[(metric, type_url.rpartition(".")[2])] += amount

    def render(self, nacks_total: int) -> str:
        lines = [
            "# TYPE remora_xds_streams_active gauge",
            f"remora_xds_streams_active {self.streams_active}",
            "# TYPE remora_xds_snapshots_applied_total counter",
            f"remora_xds_snapshots_applied_total {self.snapshots_applied}",
            "# TYPE remora_xds_source_errors_total counter",
            f"remora_xds_source_errors_total {self.source_errors}",
            "# TYPE remora_xds_nacks_total counter",
            f"remora_xds_nacks_total {nacks_total}",
        ]
        seen: set[str] = set()
        for (metric, type_label), value in sorted(self.counters.items()):
            name = f"remora_xds_{metric}_total"
            if name not in seen:
                lines.append(f"# TYPE {name} counter")
                seen.add(name)
            label = f'{{type="{type_label}"}}' if type_label else ""
            lines.append(f"{name}{label} {value}")
        return "\n".join(lines) + "\n"
