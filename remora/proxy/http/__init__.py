"""HTTP/1.1 connection management, routing and forwarding."""
