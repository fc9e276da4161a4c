"""Envoy's default tag extraction, for the stat families remora emits.

Envoy names stats flat (`cluster.demo.upstream_rq_2xx`) and, for tagged sinks like Prometheus,
lifts the variable parts into tags: `cluster.upstream_rq_xx` with `envoy_cluster_name=demo` and
`envoy_response_code_class=2`. Each rule is a regex run against the *original* name; its first
group is the text cut from the name and its second group (or the first, if there is one group) is
the tag value. Cuts from all rules are applied together at the end, as Envoy's tag producer does.

Kept here: the rules for the prefixes remora's data path uses (cluster, http, listener, tcp) and
the response code class. Envoy's per-code rule (`upstream_rq_200` -> `envoy_response_code`) is
left out on purpose: prometheus-client names every counter sample `<family>_total`, so it would
merge `upstream_rq{code}` into the `upstream_rq_total` family and double-count any sum over it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache


@dataclass(frozen=True, slots=True)
class TagRule:
    """One tag extractor: the tag name and the regex that finds its value in a stat name."""

    tag: str
    pattern: re.Pattern[str]


@dataclass(frozen=True, slots=True)
class TaggedName:
    """A stat name with its tags lifted out (Envoy's "tag-extracted name")."""

    name: str
    tags: tuple[tuple[str, str], ...]


# Ordered as Envoy orders its defaults: most specific first. The regexes mirror Envoy's
# well-known names (RE2/ECMAScript there, Python `re` here; the constructs used are common).
DEFAULT_TAG_RULES: tuple[TagRule, ...] = (
    # *_rq_(<response_code_class>)xx
    TagRule("envoy_response_code_class", re.compile(r"_rq_(\d)xx$")),
    # tcp.(<stat_prefix>.)<base_stat>
    TagRule("envoy_tcp_prefix", re.compile(r"^tcp\.((.*?)\.)\w+?$")),
    # cluster.(<cluster_name>.)*
    TagRule("envoy_cluster_name", re.compile(r"^cluster\.(([^.]+)\.)")),
    # listener.[<address>.]http.(<stat_prefix>.)*
    TagRule("envoy_http_conn_manager_prefix", re.compile(r"^listener(?=\.).*?\.http\.((.*?)\.)")),
    # http.(<stat_prefix>.)*
    TagRule("envoy_http_conn_manager_prefix", re.compile(r"^http\.((.*?)\.)")),
    # listener.(<address>.)* where the address is IPv4 `1.2.3.4_80` or IPv6 `[__1]_80`
    TagRule(
        "envoy_listener_address",
        re.compile(r"^listener\.(((?:[_.0-9]*|[_\[\]a-fA-F0-9]*))\.)"),
    ),
)


@lru_cache(maxsize=65536)
def extract_tags(name: str, rules: tuple[TagRule, ...] = DEFAULT_TAG_RULES) -> TaggedName:
    """Tags of one stat name. Cached: names are fixed at config time and every scrape asks again."""
    tags: list[tuple[str, str]] = []
    cut: set[int] = set()
    for rule in rules:
        match = rule.pattern.search(name)
        if match is None:
            continue
        value_group = 2 if rule.pattern.groups >= 2 else 1
        tags.append((rule.tag, match.group(value_group)))
        cut.update(range(match.start(1), match.end(1)))
    if not cut:
        return TaggedName(name, ())
    stripped = "".join(ch for index, ch in enumerate(name) if index not in cut)
    return TaggedName(stripped, tuple(tags))
