"""Number spelling shared by the renderers, matching what Envoy prints.

Envoy formats doubles with fmt's shortest round-trip form: `1` rather than Python's `1.0`, `nan`
for an empty interval. Tools that scrape /stats text compare these strings, so we match them.
"""

from __future__ import annotations

import math


def format_number(value: float) -> str:
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if value == int(value) and abs(value) < 1e16:
        return str(int(value))
    return repr(float(value))
