"""How a webhook's request is checked, one class per scheme of ``spec.verify`` (docs/webhooks.md).

Each verifier is built once per reload from the scheme's options and its opened secrets (the current one
first, then the previous one during a rotation), and answers which secret signed a request, or raises
``Unauthorized`` with a reason a provider's admin can act on. Every comparison is constant-time
(``hmac.compare_digest`` over bytes); a reason never quotes a secret, a signature or a header's value.
Timestamps are checked against the gateway's clock, after the signature (an unsigned timestamp means
nothing), in both directions.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from stepline.webhook import clean_secret, standard_webhooks_key

from stepline_gateway.errors import Unauthorized

_HASHES = {"sha1": hashlib.sha1, "sha256": hashlib.sha256, "sha512": hashlib.sha512}


@dataclass(frozen=True)
class SignedRequest:
    """What verification reads of a request: the raw body, headers with lower-case names, the time now."""

    body: bytes
    headers: Mapping[str, str]
    now: float


class Verifier(Protocol):
    def verify(self, request: SignedRequest) -> int | None:
        """The index of the secret that signed the request (0: current, 1: previous), None without secrets;
        raise ``Unauthorized`` when it is refused."""


def _same(given: bytes, expected: bytes) -> bool:
    return hmac.compare_digest(given, expected)


def _raw(value: str) -> bytes:
    """A header's value as the bytes that were sent (header values are read as Latin-1)."""
    return value.encode("latin-1")


def _header(request: SignedRequest, name: str, display: str, hint: str) -> str:
    value = request.headers.get(name, "").strip()
    if not value:
        raise Unauthorized(f"the request has no {display} header: {hint}")
    return value


def _timestamp(raw: str, display: str) -> int:
    if not raw.isdigit() or len(raw) > 12:
        raise Unauthorized(f"the {display} timestamp is not a Unix time in seconds")
    return int(raw)


def _check_age(timestamp: int, request: SignedRequest, tolerance_s: int, display: str) -> None:
    age = request.now - timestamp
    if abs(age) > tolerance_s:
        when = f"{int(age)} s old" if age > 0 else f"{int(-age)} s in the future"
        raise Unauthorized(
            f"stale request: the {display} timestamp is {when}, beyond the tolerance of {tolerance_s} s "
            "(a replayed or long-delayed request, or a clock that is off)"
        )


def _mac(secret: bytes, message: bytes, algorithm: str = "sha256") -> bytes:
    return hmac.new(secret, message, _HASHES[algorithm]).digest()


def _first_match(candidates: Sequence[bytes], expected: Sequence[bytes]) -> int | None:
    """Which expected digest (by secret) one of the candidates equals; every pair is compared."""
    found = None
    for index, digest in enumerate(expected):
        for candidate in candidates:
            if _same(candidate, digest) and found is None:
                found = index
    return found


_MISMATCH = (
    "the {header} signature does not match: the secret differs from the one the provider signs with, "
    "or the body was changed on the way"
)


class GitHub:
    """``X-Hub-Signature-256: sha256=<hex of HMAC-SHA256(secret, body)>``."""

    def __init__(self, secrets: Sequence[bytes]) -> None:
        self._secrets = [clean_secret(s) for s in secrets]

    def verify(self, request: SignedRequest) -> int | None:
        value = _header(
            request,
            "x-hub-signature-256",
            "X-Hub-Signature-256",
            "GitHub sends it when the webhook has a secret; set the same secret on GitHub's side",
        )
        algorithm, _, digest = value.partition("=")
        if algorithm != "sha256" or not digest:
            raise Unauthorized("the X-Hub-Signature-256 header is not sha256=<hex digest>")
        expected = [_mac(s, request.body).hex().encode() for s in self._secrets]
        found = _first_match([_raw(digest.lower())], expected)
        if found is None:
            raise Unauthorized(_MISMATCH.format(header="X-Hub-Signature-256"))
        return found


class Stripe:
    """``Stripe-Signature: t=<unix s>,v1=<hex of HMAC-SHA256(secret, "t.body")>[,v1=...]``."""

    def __init__(self, secrets: Sequence[bytes], *, tolerance_s: int) -> None:
        self._secrets = [clean_secret(s) for s in secrets]
        self._tolerance_s = tolerance_s

    def verify(self, request: SignedRequest) -> int | None:
        value = _header(
            request,
            "stripe-signature",
            "Stripe-Signature",
            "Stripe signs every event it sends; is this the endpoint's URL?",
        )
        fields: dict[str, list[str]] = {}
        for item in value.split(","):
            key, _, field = item.strip().partition("=")
            fields.setdefault(key, []).append(field)
        stamps, signatures = fields.get("t", []), [_raw(s.lower()) for s in fields.get("v1", []) if s]
        if len(stamps) != 1 or not signatures:
            raise Unauthorized("the Stripe-Signature header needs one t=<timestamp> and a v1=<signature>")
        timestamp = _timestamp(stamps[0], "Stripe-Signature")
        signed = _raw(stamps[0]) + b"." + request.body
        found = _first_match(signatures, [_mac(s, signed).hex().encode() for s in self._secrets])
        if found is None:
            raise Unauthorized(_MISMATCH.format(header="Stripe-Signature"))
        _check_age(timestamp, request, self._tolerance_s, "Stripe-Signature")
        return found


class Slack:
    """``X-Slack-Signature: v0=<hex of HMAC-SHA256(secret, "v0:ts:body")>``, ``X-Slack-Request-Timestamp``."""

    def __init__(self, secrets: Sequence[bytes], *, tolerance_s: int) -> None:
        self._secrets = [clean_secret(s) for s in secrets]
        self._tolerance_s = tolerance_s

    def verify(self, request: SignedRequest) -> int | None:
        hint = "Slack signs every request; is this the app's Request URL?"
        raw_stamp = _header(request, "x-slack-request-timestamp", "X-Slack-Request-Timestamp", hint)
        value = _header(request, "x-slack-signature", "X-Slack-Signature", hint)
        version, _, digest = value.partition("=")
        if version != "v0" or not digest:
            raise Unauthorized("the X-Slack-Signature header is not v0=<hex digest>")
        timestamp = _timestamp(raw_stamp, "X-Slack-Request-Timestamp")
        signed = b"v0:" + _raw(raw_stamp) + b":" + request.body
        expected = [_mac(s, signed).hex().encode() for s in self._secrets]
        found = _first_match([_raw(digest.lower())], expected)
        if found is None:
            raise Unauthorized(_MISMATCH.format(header="X-Slack-Signature"))
        _check_age(timestamp, request, self._tolerance_s, "X-Slack-Request-Timestamp")
        return found


class StandardWebhooks:
    """``webhook-signature: v1,<base64 of HMAC-SHA256(key, "id.timestamp.body")> [v1,...]``; the key is the
    base64 after ``whsec_``."""

    def __init__(self, secrets: Sequence[bytes], *, tolerance_s: int) -> None:
        self._keys = [standard_webhooks_key(s) for s in secrets]
        self._tolerance_s = tolerance_s

    def verify(self, request: SignedRequest) -> int | None:
        hint = "Standard Webhooks senders set webhook-id, webhook-timestamp and webhook-signature"
        message_id = _header(request, "webhook-id", "webhook-id", hint)
        raw_stamp = _header(request, "webhook-timestamp", "webhook-timestamp", hint)
        value = _header(request, "webhook-signature", "webhook-signature", hint)
        timestamp = _timestamp(raw_stamp, "webhook-timestamp")
        candidates = []
        for entry in value.split():
            version, _, signature = entry.partition(",")
            if version != "v1":
                continue  # other versions (v1a: asymmetric) are not ours to check
            try:
                candidates.append(base64.b64decode(signature, validate=True))
            except (binascii.Error, ValueError):
                continue
        if not candidates:
            raise Unauthorized("the webhook-signature header has no v1,<base64 signature>")
        signed = _raw(f"{message_id}.{raw_stamp}.") + request.body
        found = _first_match(candidates, [_mac(key, signed) for key in self._keys])
        if found is None:
            raise Unauthorized(_MISMATCH.format(header="webhook-signature"))
        _check_age(timestamp, request, self._tolerance_s, "webhook-timestamp")
        return found


class Hmac:
    """``<header>: <prefix><hex or base64 of HMAC-<algorithm>(secret, body)>``."""

    def __init__(self, secrets: Sequence[bytes], *, header: str, algorithm: str, encoding: str, prefix: str):
        if algorithm not in _HASHES or encoding not in ("hex", "base64"):
            raise ValueError(f"unknown HMAC algorithm {algorithm!r} or encoding {encoding!r}")
        self._secrets = [clean_secret(s) for s in secrets]
        self._header, self._algorithm, self._encoding, self._prefix = header, algorithm, encoding, prefix

    def verify(self, request: SignedRequest) -> int | None:
        value = _header(request, self._header, self._header, "the provider signs the body into it")
        if not value.startswith(self._prefix):
            raise Unauthorized(f"the {self._header} header does not start with {self._prefix!r}")
        given = value[len(self._prefix) :].strip()
        digests = [_mac(s, request.body, self._algorithm) for s in self._secrets]
        if self._encoding == "hex":
            found = _first_match([_raw(given.lower())], [d.hex().encode() for d in digests])
        else:
            try:
                decoded = base64.b64decode(given, validate=True)
            except (binascii.Error, ValueError):
                raise Unauthorized(f"the {self._header} signature is not base64") from None
            found = _first_match([decoded], digests)
        if found is None:
            raise Unauthorized(_MISMATCH.format(header=self._header))
        return found


class Token:
    """``<header>: <prefix><token>``: a shared token, compared as digests (constant time, any length)."""

    def __init__(self, secrets: Sequence[bytes], *, header: str, prefix: str) -> None:
        self._digests = [hashlib.sha256(clean_secret(s)).digest() for s in secrets]
        self._header, self._prefix = header, prefix

    def verify(self, request: SignedRequest) -> int | None:
        value = _header(request, self._header, self._header, "the provider sends its token in it")
        if value[: len(self._prefix)].lower() != self._prefix.lower():
            raise Unauthorized(f"the {self._header} header does not start with {self._prefix.strip()!r}")
        given = hashlib.sha256(_raw(value[len(self._prefix) :].strip())).digest()
        found = _first_match([given], self._digests)
        if found is None:
            raise Unauthorized(f"the token in {self._header} is not this webhook's token")
        return found


class Unverified:
    """``none``: every request is taken."""

    def verify(self, request: SignedRequest) -> int | None:
        return None


def verifier(scheme: str, options: Mapping[str, Any], secrets: Sequence[bytes]) -> Verifier:
    """The verifier of a published webhook; raise ``ValueError`` when its secrets or options are unusable."""
    if scheme != "none" and not secrets:
        raise ValueError(f"a {scheme} webhook needs a secret, and none is published")
    tolerance = int(options.get("tolerance_s", 300))
    if scheme == "github":
        return GitHub(secrets)
    if scheme == "stripe":
        return Stripe(secrets, tolerance_s=tolerance)
    if scheme == "slack":
        return Slack(secrets, tolerance_s=tolerance)
    if scheme == "standardWebhooks":
        return StandardWebhooks(secrets, tolerance_s=tolerance)
    if scheme == "hmac":
        return Hmac(
            secrets,
            header=str(options["header"]),
            algorithm=str(options.get("algorithm", "sha256")),
            encoding=str(options.get("encoding", "hex")),
            prefix=str(options.get("prefix", "")),
        )
    if scheme == "token":
        return Token(secrets, header=str(options["header"]), prefix=str(options.get("prefix", "")))
    if scheme == "none":
        return Unverified()
    raise ValueError(f"unknown verification scheme {scheme!r}")
