"""Log lines: `key=value` text (default) or one JSON object per line (--log-format json).

Every message of the server is written as `event=NAME key=value ...`; the JSON formatter
turns those pairs into fields, so call sites stay plain `log.info("event=x k=%s", v)`.
Nothing is logged per request at the default level (info).
"""

from __future__ import annotations

import ast
import datetime as dt
import json
import logging
import math
import re
import sys
from typing import Any

_PAIR = re.compile(r"""(\w+)=('(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|\S+)""")
_INT = re.compile(r"-?[0-9]+")
_FLOAT = re.compile(r"-?[0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?")
#: Python's text of True, False and None, as JSON values.
_CONSTANTS: dict[str, Any] = {"True": True, "False": False, "None": None}


def fields_of(message: str) -> dict[str, Any]:
    """The key=value pairs of a message: quoted values unquoted, numbers as numbers,
    True/False/None as booleans and null; anything else (nan, 1_000, 0x10) stays text."""
    out: dict[str, Any] = {}
    for key, raw in _PAIR.findall(message):
        value: Any = raw
        if raw[:1] in "'\"":
            try:
                value = ast.literal_eval(raw)
            except (ValueError, SyntaxError):
                value = raw[1:-1]
        elif raw in _CONSTANTS:
            value = _CONSTANTS[raw]
        elif _INT.fullmatch(raw):
            value = int(raw)
        elif _FLOAT.fullmatch(raw) and math.isfinite(float(raw)):   # JSON has no inf
            value = float(raw)
        out[key] = value
    return out


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, then the message's fields."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        entry: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(), "logger": record.name}
        pairs = fields_of(message)
        if "event" in pairs:
            entry.update(pairs)
        else:
            entry["message"] = message
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def setup(level: str = "info", fmt: str = "text") -> None:
    """Configure the root logger on stderr."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
