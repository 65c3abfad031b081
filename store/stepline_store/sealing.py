"""Secrets at rest: what Stepline keeps in Postgres that only its own processes may read, sealed.

The gateways have no Kubernetes access, so the operator (and ``stepline dev``) publish the secrets they need
(a webhook's signing secret...) into Postgres sealed with ``STEPLINE_SECRETS_KEY``: one or more Fernet keys
(32 url-safe base64 bytes each), comma-separated. The first key seals; every key opens, so a key is rotated
by putting a new one first and removing the old one once everything was sealed again (``fingerprint``
changes with the first key, which makes the publishers seal again). A ``Sealer`` never puts a secret, or a
part of one, in an error message.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from stepline_store.errors import StoreError

SETTING = "STEPLINE_SECRETS_KEY"


class SealingKeyInvalid(StoreError, ValueError):
    """``STEPLINE_SECRETS_KEY`` is not a list of Fernet keys."""


class SealBroken(StoreError):
    """A sealed value cannot be opened: sealed under another key, or altered."""


def new_key() -> str:
    """A fresh key for ``STEPLINE_SECRETS_KEY``."""
    return Fernet.generate_key().decode("ascii")


def parse_keys(value: str) -> list[str]:
    """The keys of the setting, first the one that seals; raise ``SealingKeyInvalid`` saying what to fix."""
    keys = [part.strip() for part in value.split(",") if part.strip()]
    if not keys:
        raise SealingKeyInvalid(f"{SETTING} is empty: give one or more comma-separated keys")
    for index, key in enumerate(keys):
        try:
            Fernet(key)
        except ValueError:
            raise SealingKeyInvalid(
                f"{SETTING}: key {index + 1} is not a Fernet key: give 32 random bytes in url-safe base64, "
                "e.g. from `openssl rand -base64 32 | tr '+/' '-_'`"
            ) from None
    return keys


class Sealer:
    """Seals and opens bytes with the keys of ``STEPLINE_SECRETS_KEY`` (the first seals, all open)."""

    def __init__(self, keys: Sequence[str]) -> None:
        if not keys:
            raise SealingKeyInvalid(f"{SETTING} is empty: give one or more comma-separated keys")
        self._fernet = MultiFernet([Fernet(key) for key in keys])
        # Derived from the sealing key, never the key itself: fingerprints must not help guess a secret.
        first = base64.urlsafe_b64decode(keys[0].encode("ascii"))
        self._digest_key = hmac.new(first, b"stepline fingerprint", hashlib.sha256).digest()

    @classmethod
    def from_setting(cls, value: str) -> Sealer:
        return cls(parse_keys(value))

    def seal(self, plaintext: bytes) -> str:
        """The sealed form of ``plaintext``: an ASCII token, different at every call."""
        return self._fernet.encrypt(plaintext).decode("ascii")

    def open(self, token: str) -> bytes:
        """The plaintext of a sealed ``token``; raise ``SealBroken`` when no key opens it."""
        try:
            return self._fernet.decrypt(token.encode("ascii"))
        except (InvalidToken, UnicodeEncodeError, ValueError):
            raise SealBroken(
                f"a sealed secret cannot be opened with {SETTING}: it was sealed under another key (give "
                "this process the same keys as the operator's), or the stored value was altered"
            ) from None

    def fingerprint(self, data: bytes) -> str:
        """A keyed digest of ``data``: equal for equal data under the same first key, and reveals nothing."""
        return hmac.new(self._digest_key, data, hashlib.sha256).hexdigest()
