"""Envoy's RBAC: the `envoy.filters.http.rbac` and `envoy.filters.network.rbac` filters."""
