"""Renders the supported-field registry as Markdown, so docs/configuration.md cannot drift.

`python -m remora.config.reference` prints the generated part; a test checks the committed doc
contains exactly that.
"""

from __future__ import annotations

import remora.config.compile  # noqa: F401  (imports every compiler, which registers its fields)
from remora.config import support

BEGIN = "<!-- generated:supported-fields:start -->"
END = "<!-- generated:supported-fields:end -->"


def render() -> str:
    lines = [BEGIN, "", "| message | supported fields |", "|---|---|"]
    for message, fields in sorted(support.supported_fields().items()):
        shown = ", ".join(f"`{f}`" for f in sorted(fields)) or "(none: any set field is rejected)"
        lines.append(f"| `{message}` | {shown} |")
    lines += ["", "Accepted with a warning (they have no effect in remora):", ""]
    for message, ignored in sorted(support.ignored_fields().items()):
        for field, reason in sorted(ignored.items()):
            lines.append(f"- `{message}.{field}`: {reason}")
    lines += ["", END]
    return "\n".join(lines)


if __name__ == "__main__":
    print(render())
