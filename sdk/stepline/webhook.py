"""The Webhook resource (``stepline.dev/v1alpha1``): a provider's signed request turned into events.

The same pydantic classes validate a ``Webhook`` document from a manifest file (``stepline dev -f``) and a
custom resource reconciled by the operator, and generate the CRD schema (``stepline.crd``). As for
``Function``, rules a schema cannot state are model validators here and CEL ``x-kubernetes-validations`` in
the CRD, side by side. ``spec.verify`` names exactly one scheme; every scheme but ``none`` reads its secret
from a Secret of the namespace, and may name a previous one that is still accepted during a rotation.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Annotated, Any, Literal, Self

import pydantic
from pydantic import Field, model_validator

from stepline.manifest import (
    Condition,
    ObjectMeta,
    _Model,
    _rules,
)

KIND = "Webhook"
# The verification schemes, as spec.verify spells them.
SCHEMES = ("github", "stripe", "slack", "standardWebhooks", "hmac", "token", "none")
DEFAULT_TOLERANCE = "5m"
# A tolerance longer than this would make a replayed request acceptable for too long.
MAX_TOLERANCE_S = 24 * 3600
MAX_TRANSFORM_LENGTH = 8192
_DURATION = r"^([0-9]+(s|m|h))+$"
_DURATION_PART = re.compile(r"([0-9]+)(s|m|h)")
_UNIT_S = {"s": 1, "m": 60, "h": 3600}
# Patterns of a Secret's name and of a key in it (not secrets themselves).
_SECRET_NAME = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"  # noqa: S105
_SECRET_KEY = r"^[-._a-zA-Z0-9]+$"  # noqa: S105
_HEADER = r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$"
_EXACTLY_ONE = (
    "exactly one of verify.github, verify.stripe, verify.slack, verify.standardWebhooks, verify.hmac, "
    "verify.token or verify.none must be set (none: {} accepts unsigned requests, and must be said)"
)


def duration_seconds(text: str) -> int:
    """``5m`` -> 300, ``1h30m`` -> 5400 (the CRD's pattern has already refused anything else)."""
    return sum(int(number) * _UNIT_S[unit] for number, unit in _DURATION_PART.findall(text))


class SecretKeyRef(_Model):
    """One key of a Secret in the Webhook's namespace."""

    name: Annotated[
        str,
        Field(pattern=_SECRET_NAME, max_length=253, description="Name of the Secret, in the same namespace."),
    ]
    key: Annotated[
        str, Field(pattern=_SECRET_KEY, max_length=253, description="The key in the Secret's data.")
    ]


class _Signed(_Model):
    secret_ref: SecretKeyRef = Field(alias="secretRef", description="The secret the provider signs with.")
    previous_secret_ref: SecretKeyRef | None = Field(
        default=None,
        alias="previousSecretRef",
        description="During a rotation, the secret used before: requests signed with either are accepted "
        "until this is removed.",
    )


class _Timed(_Signed):
    tolerance: Annotated[
        str,
        Field(
            pattern=_DURATION,
            description="How far the signed timestamp may be from the gateway's clock, e.g. 5m.",
        ),
    ] = DEFAULT_TOLERANCE

    @model_validator(mode="after")
    def _bounded(self) -> Self:
        seconds = duration_seconds(self.tolerance)
        if not 0 < seconds <= MAX_TOLERANCE_S:
            raise ValueError(f"tolerance must be more than 0 s and at most 24h, not {self.tolerance}")
        return self

    @property
    def tolerance_s(self) -> int:
        return duration_seconds(self.tolerance)


class GitHubVerify(_Signed):
    """GitHub: ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>``."""


class StripeVerify(_Timed):
    """Stripe: ``Stripe-Signature: t=<unix s>,v1=<hex HMAC-SHA256 of "t.body">``; the secret is whsec_..."""


class SlackVerify(_Timed):
    """Slack: ``X-Slack-Signature: v0=<hex HMAC-SHA256 of "v0:ts:body">``, ``X-Slack-Request-Timestamp``."""


class StandardWebhooksVerify(_Timed):
    """Standard Webhooks (Svix and others): ``webhook-id``, ``webhook-timestamp``, ``webhook-signature``."""


class HmacVerify(_Signed):
    """Any provider that signs the body with an HMAC into one header."""

    header: Annotated[
        str, Field(pattern=_HEADER, max_length=256, description="The header with the signature.")
    ]
    algorithm: Literal["sha1", "sha256", "sha512"] = Field(
        default="sha256", description="The HMAC's hash: sha1, sha256 or sha512."
    )
    encoding: Literal["hex", "base64"] = Field(default="hex", description="How the digest is written.")
    prefix: Annotated[
        str, Field(max_length=64, description="What comes before the digest in the header, e.g. sha256=.")
    ] = ""


class TokenVerify(_Signed):
    """A shared token in a header (no signature): ``Authorization: Bearer <token>`` or e.g. X-Gitlab-Token."""

    header: Annotated[
        str, Field(pattern=_HEADER, max_length=256, description="The header with the token.")
    ] = "Authorization"
    prefix: Annotated[
        str | None,
        Field(
            max_length=64,
            description="What comes before the token; default 'Bearer ' for Authorization, none otherwise.",
        ),
    ] = None

    @property
    def expected_prefix(self) -> str:
        if self.prefix is not None:
            return self.prefix
        return "Bearer " if self.header.lower() == "authorization" else ""


class NoVerification(_Model):
    """``none: {}``: requests are not checked. Only for providers that cannot sign, on a trusted network."""


class Verify(_Model):
    """How a request is checked: exactly one scheme."""

    model_config = pydantic.ConfigDict(
        json_schema_extra=_rules(
            (" + ".join(f"(has(self.{scheme}) ? 1 : 0)" for scheme in SCHEMES) + " == 1", _EXACTLY_ONE)
        )
    )

    github: GitHubVerify | None = Field(default=None, description="GitHub's X-Hub-Signature-256.")
    stripe: StripeVerify | None = Field(default=None, description="Stripe's Stripe-Signature.")
    slack: SlackVerify | None = Field(default=None, description="Slack's X-Slack-Signature.")
    standard_webhooks: StandardWebhooksVerify | None = Field(
        default=None, alias="standardWebhooks", description="The Standard Webhooks (Svix) headers."
    )
    hmac: HmacVerify | None = Field(default=None, description="An HMAC of the body in a header.")
    token: TokenVerify | None = Field(default=None, description="A shared token in a header.")
    none: NoVerification | None = Field(default=None, description="No check at all: say it explicitly.")

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        if sum(getattr(self, name) is not None for name in self.model_fields) != 1:
            raise ValueError(_EXACTLY_ONE)
        return self

    @property
    def scheme(self) -> str:
        """The scheme's name as spec.verify spells it (``standardWebhooks``...)."""
        for name, info in type(self).model_fields.items():
            if getattr(self, name) is not None:
                return info.alias or name
        raise AssertionError("the validator guarantees one scheme")

    @property
    def settings(self) -> GitHubVerify | _Timed | HmacVerify | TokenVerify | NoVerification:
        for name in type(self).model_fields:
            value = getattr(self, name)
            if value is not None:
                return value  # type: ignore[no-any-return]
        raise AssertionError("the validator guarantees one scheme")

    def secret_refs(self) -> list[SecretKeyRef]:
        """The current secret first, then the previous one during a rotation; none for ``none``."""
        settings = self.settings
        if not isinstance(settings, _Signed):
            return []
        refs = [settings.secret_ref]
        if settings.previous_secret_ref is not None:
            refs.append(settings.previous_secret_ref)
        return refs

    def options(self) -> dict[str, Any]:
        """What the gateway needs besides the secrets, as published: tolerance in seconds, header..."""
        settings = self.settings
        if isinstance(settings, _Timed):
            return {"tolerance_s": settings.tolerance_s}
        if isinstance(settings, HmacVerify):
            return {
                "header": settings.header.lower(),
                "algorithm": settings.algorithm,
                "encoding": settings.encoding,
                "prefix": settings.prefix,
            }
        if isinstance(settings, TokenVerify):
            return {"header": settings.header.lower(), "prefix": settings.expected_prefix}
        return {}


class WebhookSpec(_Model):
    """The desired state of a Webhook: how its requests are checked and turned into events."""

    verify: Verify = Field(description="How a request is checked: exactly one scheme.")
    transform: Annotated[
        str | None,
        Field(
            max_length=MAX_TRANSFORM_LENGTH,
            description="CEL over body, headers (lower-case names), query and method giving one event "
            "{name, data, id?, ts?} or a list of them; default "
            '{"name": "webhook/<namespace>.<name>", "data": body}.',
        ),
    ] = None


class WebhookStatus(_Model):
    """The observed state of a Webhook, written by the operator."""

    observed_generation: Annotated[
        int | None,
        Field(alias="observedGeneration", ge=0, description="The metadata.generation last reconciled."),
    ] = None
    url: str | None = Field(
        default=None, description="The gateway's path that receives the provider's requests."
    )
    verify: str | None = Field(default=None, description="The verification scheme, for kubectl get.")
    conditions: Annotated[
        list[Condition],
        Field(
            description="Ready and SecretResolved.",
            json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
        ),
    ] = []


class WebhookResource(_Model):
    """A whole ``Webhook`` document as written in a manifest file."""

    model_config = pydantic.ConfigDict(extra="ignore", populate_by_name=True, frozen=True)

    api_version: Literal["stepline.dev/v1alpha1"] = Field(alias="apiVersion")
    kind: Literal["Webhook"]
    metadata: ObjectMeta
    spec: WebhookSpec

    @property
    def path(self) -> str:
        return webhook_path(self.metadata.namespace, self.metadata.name)

    @property
    def default_event_name(self) -> str:
        return default_event_name(self.metadata.namespace, self.metadata.name)


def webhook_path(namespace: str, name: str) -> str:
    """The gateway's path of a Webhook: ``/webhooks/<namespace>/<name>`` (its ``status.url``)."""
    return f"/webhooks/{namespace}/{name}"


def default_event_name(namespace: str, name: str) -> str:
    """The event name the default transform gives: ``webhook/<namespace>.<name>``."""
    return f"webhook/{namespace}.{name}"


def clean_secret(value: bytes) -> bytes:
    """A secret as read from a Secret, without the whitespace around it (the newline a file ends with)."""
    return value.strip()


def standard_webhooks_key(secret: bytes) -> bytes:
    """The HMAC key of a Standard Webhooks secret: ``whsec_<base64>`` (or the bare base64), decoded."""
    text = clean_secret(secret).removeprefix(b"whsec_")
    try:
        key = base64.b64decode(text + b"=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("is not whsec_ followed by base64, as Standard Webhooks secrets are") from None
    if not key:
        raise ValueError("is empty")
    return key


def secret_problem(scheme: str, secret: bytes) -> str | None:
    """What is wrong with a secret for ``scheme``, in words that never quote it; None when it is usable."""
    if not clean_secret(secret):
        return "is empty"
    if scheme == "standardWebhooks":
        try:
            standard_webhooks_key(secret)
        except ValueError as err:
            return str(err)
    return None


def parse_webhook(document: Any) -> WebhookResource:
    """Validate one ``Webhook`` document; raises pydantic.ValidationError naming the field at fault."""
    return WebhookResource.model_validate(document)
