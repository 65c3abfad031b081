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

# Bytes that may stand for a value Postgres refuses. A NUL or a lone surrogate can only be written as an
# escape (raw control characters are not JSON) or, for a surrogate, as its raw UTF-8 bytes (Python decodes
# them with "surrogatepass"); a non-finite number only as NaN, Infinity, an exponent of three digits or
# more, or a run of 200 digits (an integer part that long, times 10^99 at most, overflows a double). A body
# with none of them holds nothing ``problem`` finds (nesting aside), so it need not be walked: the common
# case costs one scan of its bytes.
_ESCAPES = re.compile(rb"\\u0000|\\u[dD][89a-fA-F]|\xed[\xa0-\xbf]")
_NON_FINITE = re.compile(rb"NaN|Infinity|[0-9][eE]\+?[0-9]{3,}(?![0-9A-Za-z])|[0-9]{200}")
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


def parse_document(raw: bytes) -> Document:
    """Parse a JSON document (UTF-8), and tell whether its bytes show it clean (``may_hold_problems``);
    InvalidJson saying why when it is not one, or when it is nested far too deeply. The values may still be
    ones Postgres refuses: ask ``problem`` before storing them, unless the document is clean."""
    if json.detect_encoding(raw) not in ("utf-8", "utf-8-sig"):
        # JSON between systems is UTF-8 (RFC 8259); other encodings would also hide escapes from the scan.
        raise InvalidJson("it is not UTF-8")
    try:
        value = json.loads(raw)
    except RecursionError:
        # Python's parser recurses once per level and stops cleanly at its recursion limit; documents
        # between MAX_DEPTH and that limit parse, and ``problem`` refuses them.
        raise TooDeep(f"it is nested more than {MAX_DEPTH} levels deep") from None
    except ValueError as err:  # JSONDecodeError, UnicodeDecodeError, and ints of more than 4300 digits
        raise InvalidJson(str(err).splitlines()[0]) from None
    return Document(value, len(raw), not may_hold_problems(raw))


def may_hold_problems(raw: bytes) -> bool:
    """False when ``raw`` certainly parses to a document ``problem`` finds nothing in (a quick byte scan)."""
    return (
        raw.count(b"[") + raw.count(b"{") > MAX_DEPTH
        or _ESCAPES.search(raw) is not None
        or _NON_FINITE.search(raw) is not None
    )


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
