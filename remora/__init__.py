"""remora: a service-mesh sidecar and toolkit in Python."""

import os as _os

__version__ = "0.1.0"

# REMORA_NATIVE=0 runs the mypyc-compiled hot path from its source (remora/native.py). It is
# decided here, before any submodule loads; remora.native is imported only when it is set.
if _os.environ.get("REMORA_NATIVE") is not None:
    from remora import native as _native

    _native.apply_env()
