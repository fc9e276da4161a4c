"""remora: a service-mesh sidecar and toolkit in Python."""

__version__ = "0.1.0"
