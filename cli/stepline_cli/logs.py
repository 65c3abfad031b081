"""Log lines of ``stepline gateway``, ``operator`` and ``dev``: plain text (the default) or JSON.

``--log-format json`` writes one JSON object per line: ``time`` (UTC, ISO 8601), ``level``, ``logger``,
``message``, the ``run_id``, ``function`` and ``namespace`` of a line about a run (the gateway's
``log_context``), and ``exception`` with the traceback when there is one. Log collectors (Loki, Elastic,
Cloud Logging) read these fields without parsing the message.
"""

from __future__ import annotations

import datetime
import json
import logging
import sys

from stepline_gateway.log_context import current

FORMATS = ("text", "json")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **current(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure(level: str, log_format: str, *, text: str, datefmt: str | None = None) -> None:
    """Log to stderr at ``level``, as JSON lines or with the ``text`` format."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter() if log_format == "json" else logging.Formatter(text, datefmt=datefmt)
    )
    logging.basicConfig(level=level, handlers=[handler])
