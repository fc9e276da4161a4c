"""Envoy v3 config: parsing into the real protobuf messages and compiling into runtime objects."""
