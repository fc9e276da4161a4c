"""Envoy-compatible access logging: stdout, stderr and file loggers with Envoy's format strings.

The data path fills an `AccessLogRecord` per request (or TCP connection) and calls `log` on each
logger compiled from the listener's `access_log` config.
"""

from remora.proxy.accesslog.config import compile_access_logs
from remora.proxy.accesslog.logger import AccessLogger
from remora.proxy.accesslog.record import AccessLogRecord

__all__ = ["AccessLogRecord", "AccessLogger", "compile_access_logs"]
