"""TLS transport sockets: Envoy's `envoy.transport_sockets.tls` on listeners and clusters."""
