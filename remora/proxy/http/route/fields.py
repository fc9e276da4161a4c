"""The Envoy fields this package implements, registered with the config support walker.

Kept in one place so the list can be read against the compiler: a field appears here only if the
compiler honours it (or rejects it with its own error when a value is unusable).
"""

from __future__ import annotations

from remora.config.support import register, register_ignored

_ROUTE = "envoy.config.route.v3"
_HEADER_MUTATIONS = (
    "request_headers_to_add",
    "request_headers_to_remove",
    "response_headers_to_add",
    "response_headers_to_remove",
)

register(
    f"{_ROUTE}.RouteConfiguration",
    {
        "name",
        "virtual_hosts",
        *_HEADER_MUTATIONS,
        "most_specific_header_mutations_wins",
        "ignore_port_in_host_matching",
        "ignore_path_parameters_in_path_matching",
        "max_direct_response_body_size_bytes",
    },
)
register_ignored(
    f"{_ROUTE}.RouteConfiguration",
    "validate_clusters",
    "route targets are listed by RouteTable.cluster_names for the caller to validate",
)
register(
    f"{_ROUTE}.VirtualHost",
    {
        "name",
        "domains",
        "routes",
        *_HEADER_MUTATIONS,
        "retry_policy",
        "include_request_attempt_count",
        "per_request_buffer_limit_bytes",
    },
)
register(
    f"{_ROUTE}.Route",
    {
        "name",
        "match",
        "route",
        "redirect",
        "direct_response",
        *_HEADER_MUTATIONS,
        "per_request_buffer_limit_bytes",
    },
)
register(
    f"{_ROUTE}.RouteMatch",
    {
        "prefix",
        "path",
        "safe_regex",
        "path_separated_prefix",
        "case_sensitive",
        "headers",
        "query_parameters",
        "grpc",
    },
)
register(f"{_ROUTE}.RouteMatch.GrpcRouteMatchOptions", ())
register(
    f"{_ROUTE}.HeaderMatcher",
    {
        "name",
        "exact_match",
        "safe_regex_match",
        "range_match",
        "present_match",
        "prefix_match",
        "suffix_match",
        "contains_match",
        "string_match",
        "invert_match",
        "treat_missing_header_as_empty",
    },
)
register("envoy.type.v3.Int64Range", {"start", "end"})
register(f"{_ROUTE}.QueryParameterMatcher", {"name", "string_match", "present_match"})
register(
    "envoy.type.matcher.v3.StringMatcher",
    {"exact", "prefix", "suffix", "contains", "safe_regex", "ignore_case"},
)
register("envoy.type.matcher.v3.RegexMatcher", {"google_re2", "regex"})
register("envoy.type.matcher.v3.RegexMatcher.GoogleRE2", {"max_program_size"})
register("envoy.type.matcher.v3.RegexMatchAndSubstitute", {"pattern", "substitution"})
register(
    f"{_ROUTE}.RouteAction",
    {
        "cluster",
        "weighted_clusters",
        "prefix_rewrite",
        "regex_rewrite",
        "host_rewrite_literal",
        "auto_host_rewrite",
        "timeout",
        "hash_policy",
        "retry_policy",
        "max_stream_duration",
    },
)
register(
    f"{_ROUTE}.RouteAction.MaxStreamDuration",
    {"max_stream_duration", "grpc_timeout_header_max", "grpc_timeout_header_offset"},
)
register(f"{_ROUTE}.WeightedCluster", {"clusters", "total_weight", "header_name"})
register(
    f"{_ROUTE}.WeightedCluster.ClusterWeight",
    {"name", "weight", "host_rewrite_literal", *_HEADER_MUTATIONS},
)
register(
    f"{_ROUTE}.RedirectAction",
    {
        "https_redirect",
        "scheme_redirect",
        "host_redirect",
        "port_redirect",
        "path_redirect",
        "prefix_rewrite",
        "regex_rewrite",
        "response_code",
        "strip_query",
    },
)
register(f"{_ROUTE}.DirectResponseAction", {"status", "body"})
register("envoy.config.core.v3.DataSource", {"inline_bytes", "inline_string"})
register(
    "envoy.config.core.v3.HeaderValueOption",
    {"header", "append", "append_action", "keep_empty_value"},
)
register("envoy.config.core.v3.HeaderValue", {"key", "value", "raw_value"})
