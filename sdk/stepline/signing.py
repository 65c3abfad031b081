"""Request and response signatures, and the bearer token derived from a signing key.

A signature is ``t=<unix seconds>&s=<hex HMAC-SHA256>``. Requests are signed over their canonical JSON
(RFC 8785) followed by ``t``; responses over their raw bytes followed by ``t``. The key is the signing key
without its ``signkey-<env>-`` prefix. The bearer token for the server's own API is the sha256 hex of the
key's bytes (the key is hex), exactly as the official Inngest SDKs derive it (the TypeScript SDK prefixes it
with the key's ``signkey-<env>-``).

A signature is good for ``MAX_SIGNATURE_AGE_S``; within that window ``ReplayGuard`` refuses a signature
seen before, so a captured call sent again does not run a step again. Each of the gateway's calls carries
a fresh ``ctx.nonce`` in its signed body, so two genuine calls never share a signature.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from collections import OrderedDict
from typing import Any
from urllib.parse import parse_qs

import rfc8785

_PREFIX = re.compile(r"^signkey-\w+-")

# A signature older than this is refused, so a captured request cannot be replayed much later.
MAX_SIGNATURE_AGE_S = 5 * 60


class SignatureError(Exception):
    """A signature is missing, malformed, expired or wrong."""


def strip_prefix(signing_key: str) -> str:
    return _PREFIX.sub("", signing_key, count=1)


def canonical_json(body: bytes) -> bytes:
    """The RFC 8785 form of a JSON document; an empty body stays empty."""
    if not body:
        return body
    return rfc8785.dumps(json.loads(body))


def _mac(key: str, payload: bytes, timestamp: int) -> str:
    mac = hmac.new(strip_prefix(key).encode("utf-8"), payload, hashlib.sha256)
    mac.update(str(timestamp).encode("utf-8"))
    return mac.hexdigest()


def sign(payload: bytes, signing_key: str, *, timestamp: int | None = None) -> str:
    """Sign bytes that are already in their signed form (canonical for requests, raw for responses)."""
    ts = int(time.time()) if timestamp is None else timestamp
    return f"t={ts}&s={_mac(signing_key, payload, ts)}"


def sign_request(body: bytes, signing_key: str, *, timestamp: int | None = None) -> str:
    return sign(canonical_json(body), signing_key, timestamp=timestamp)


def verify(
    payload: bytes,
    header: str | None,
    signing_keys: list[str],
    *,
    now: float | None = None,
    max_age_s: float = MAX_SIGNATURE_AGE_S,
) -> None:
    """Check a signature header against any of the keys (current, then fallback); raise SignatureError."""
    if not header:
        raise SignatureError("the x-inngest-signature header is missing")
    fields = parse_qs(header)
    try:
        ts = int(fields["t"][0])
        sig = fields["s"][0]
    except (KeyError, ValueError, IndexError):
        raise SignatureError("the x-inngest-signature header is malformed") from None
    current = time.time() if now is None else now
    if abs(current - ts) > max_age_s:
        raise SignatureError("the signature has expired: check that the clocks of both machines are right")
    for key in signing_keys:
        if hmac.compare_digest(sig, _mac(key, payload, ts)):
            return
    raise SignatureError("the signature does not match: check that both sides use the same signing key")


def verify_request(
    body: bytes, header: str | None, signing_keys: list[str], *, now: float | None = None
) -> None:
    try:
        payload = canonical_json(body)
    except ValueError:
        raise SignatureError("the signed body is not valid JSON") from None
    verify(payload, header, signing_keys, now=now)


class ReplayGuard:
    """The signatures accepted within their time window, so that none is accepted twice (in one process).

    Memory stays bounded by the calls of one window (about 100 bytes each): entries are dropped once the
    window has passed. Several replicas of a service each keep their own; docs/protocol.md says how a
    service checks ``ctx.run_id``, ``ctx.attempt`` and ``ctx.nonce`` itself when it needs more.
    """

    def __init__(self, *, max_age_s: float = MAX_SIGNATURE_AGE_S) -> None:
        self._max_age_s = max_age_s
        self._seen: OrderedDict[str, float] = OrderedDict()

    def admit(self, header: str | None, *, now: float | None = None) -> None:
        """Record the (already verified) signature of ``header``; SignatureError if it was seen before."""
        fields = parse_qs(header or "")
        signature = "&".join(fields.get("t", []) + fields.get("s", []))
        current = time.time() if now is None else now
        while self._seen:
            oldest, seen_at = next(iter(self._seen.items()))
            if current - seen_at <= 2 * self._max_age_s:
                break
            del self._seen[oldest]
        if signature in self._seen:
            raise SignatureError(
                "this signed request was received before: a replayed call is refused (each of the "
                "gateway's calls is signed afresh)"
            )
        self._seen[signature] = current


def bearer_token(signing_key: str) -> str:
    """The token the official SDKs send to the server's API: sha256 hex of the key's bytes."""
    raw = strip_prefix(signing_key)
    try:
        material = bytes.fromhex(raw)
    except ValueError:
        material = raw.encode("utf-8")
    return hashlib.sha256(material).hexdigest()


def bearer_matches(authorization: str | None, signing_keys: list[str]) -> bool:
    """Whether an ``Authorization`` header carries the bearer token of one of the keys.

    The official SDKs differ: the Python SDK sends the bare digest, the TypeScript SDK puts the key's
    ``signkey-<env>-`` prefix in front of it; both are accepted, as the Inngest server does.
    """
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return False
    given = strip_prefix(token.strip())
    return any(hmac.compare_digest(given, bearer_token(key)) for key in signing_keys)


def canonical_dumps(document: Any) -> bytes:
    """Serialise a document straight to its canonical (signed) form."""
    return rfc8785.dumps(document)
