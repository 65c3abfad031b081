"""JSON that Postgres can store: bodies parsed safely, and what a ``jsonb`` or ``text`` column would refuse.

Every body the gateway reads (events, syncs, checkpoints, the services' answers) goes through
``parse_document``, which never crashes on depth, and through ``problem`` before it is written (unless its
bytes already show it clean). Postgres refuses the NUL character (``\\u0000``) and lone UTF-16 surrogates in
text and JSON, and JSON has no NaN or infinities (``NaN``, ``-Infinity``, ``1e400``); nesting is limited to
``MAX_DEPTH`` levels so that the gateway's own encoders and Postgres's parser never run out of stack.
docs/api.md lists the limits.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

# Levels of nesting accepted in any JSON document (an object or array counts one level).
MAX_DEPTH = 100

# Bytes that may stand for a string Postgres refuses: a NUL or a lone surrogate can only be written as an
# escape (raw control characters are not JSON) or, for a surrogate, as its raw UTF-8 bytes (Python decodes
# them with "surrogatepass"). Non-finite numbers are seen while parsing (``_NumberWatch``). A body with
# neither holds nothing ``problem`` finds (nesting aside), so it need not be walked: the common case costs
# a search for two byte strings.
_ESCAPES = re.compile(rb"\\u(?:0000|[dD][89a-fA-F])|\xed[\xa0-\xbf]")
_SURROGATE = re.compile("[\ud800-\udfff]")
_NUL = "\x00"


class InvalidJson(ValueError):
    """A body that is not JSON, or nested deeper than ``MAX_DEPTH``."""


class TooDeep(InvalidJson):
    """A body nested far deeper than ``MAX_DEPTH``: too deep to parse at all."""


@dataclass(frozen=True)
class Document:
    """A parsed body: its value, its size in bytes, and whether its bytes show it holds nothing that
    ``problem`` would find (when False, it may or may not)."""

    value: Any
    size: int
    clean: bool


class _NumberWatch:
    """Sees, while a body is parsed, whether it holds a number JSON cannot hold (NaN, an infinity, or a
    literal too large for a double, such as 1e400). One for the module: parsing never awaits, so no two
    parses overlap."""

    def __init__(self) -> None:
        self.seen = False

    def number(self, text: str) -> float:
        value = float(text)
        if not math.isfinite(value):
            self.seen = True
        return value

    def constant(self, text: str) -> float:
        self.seen = True
        return float(text)


_WATCH = _NumberWatch()
_DECODER = json.JSONDecoder(parse_float=_WATCH.number, parse_constant=_WATCH.constant)


def parse_document(raw: bytes) -> Document:
    """Parse a JSON document (UTF-8), and tell whether it is known clean; InvalidJson saying why when it is
    not one, or when it is nested far too deeply. The values may still be ones Postgres refuses: ask
    ``problem`` before storing them, unless the document is clean."""
    encoding = json.detect_encoding(raw)
    if encoding not in ("utf-8", "utf-8-sig"):
        # JSON between systems is UTF-8 (RFC 8259); other encodings would also hide escapes from the scan.
        raise InvalidJson("it is not UTF-8")
    _WATCH.seen = False
    try:
        value = _DECODER.decode(raw.decode(encoding, "surrogatepass"))
    except RecursionError:
        # Python's parser recurses once per level and stops cleanly at its recursion limit; documents
        # between MAX_DEPTH and that limit parse, and ``problem`` refuses them.
        raise TooDeep(f"it is nested more than {MAX_DEPTH} levels deep") from None
    except ValueError as err:  # JSONDecodeError, UnicodeDecodeError, and ints of more than 4300 digits
        raise InvalidJson(str(err).splitlines()[0]) from None
    clean = not _WATCH.seen and raw.count(b"[") + raw.count(b"{") <= MAX_DEPTH
    if clean and (b"\\u" in raw or b"\xed" in raw):
        clean = _ESCAPES.search(raw) is None
    return Document(value, len(raw), clean)


def text_problem(value: str) -> str | None:
    """What makes a string unstorable in a ``text`` column, if anything."""
    if _NUL in value:
        return "a NUL character"
    if _SURROGATE.search(value):
        return "a lone UTF-16 surrogate (invalid Unicode)"
    return None


def problem(value: Any, *, depth: int = MAX_DEPTH) -> str | None:
    """Where ``value`` holds something Postgres cannot store, as ``"a NUL character at data.note"``; None
    when it holds nothing of the kind. Walks without recursion, so any depth is safe to look at."""
    stack: list[tuple[Any, tuple[Any, ...], int]] = [(value, (), 0)]
    while stack:
        item, path, level = stack.pop()
        if isinstance(item, str):
            found = text_problem(item)
        elif isinstance(item, float):
            found = None if math.isfinite(item) else f"a number JSON cannot hold ({item})"
        elif isinstance(item, dict | list):
            if level >= depth:
                return f"nesting deeper than {depth} levels at {format_path(path)}"
            found = None
            if isinstance(item, dict):
                for key, child in item.items():
                    key_problem = text_problem(key) if isinstance(key, str) else None
                    if key_problem is not None:
                        return f"{key_problem} in a key at {format_path(path)}"
                    stack.append((child, (*path, key), level + 1))
            else:
                stack.extend((child, (*path, index), level + 1) for index, child in enumerate(item))
        else:
            found = None
        if found is not None:
            return f"{found} at {format_path(path)}"
    return None


def format_path(path: tuple[Any, ...]) -> str:
    """``("data", "items", 3)`` -> ``data.items[3]``; the empty path is the top level."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "the top level"


def clean_text(value: Any, *, limit: int) -> str:
    """``value`` as a string Postgres stores, at most ``limit`` characters: for text that is only shown
    (error messages, stack traces), where refusing would hide the error it reports."""
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    text = _SURROGATE.sub("\ufffd", text.replace(_NUL, "\ufffd"))
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def size(value: Any) -> int:
    """Bytes of ``value`` as compact JSON (UTF-8): how sizes are measured against the limits."""
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8", "surrogatepass"))
