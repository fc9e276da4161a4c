"""An access logger: one compiled format bound to one sink."""

from __future__ import annotations

from remora.proxy.accesslog.formatter import Formatter
from remora.proxy.accesslog.record import AccessLogRecord
from remora.proxy.accesslog.sinks import FdSink


class AccessLogger:
    """Formats records and hands the lines to a batched sink; `log` never blocks the loop."""

    __slots__ = ("_format", "name", "sink")

    def __init__(self, name: str, format_record: Formatter, sink: FdSink) -> None:
        self.name = name
        self._format = format_record
        self.sink = sink

    def log(self, record: AccessLogRecord) -> None:
        self.sink.write(self._format(record))

    def flush(self) -> None:
        self.sink.flush()

    def close(self) -> None:
        self.sink.close()
