"""A call's body as the gateway encodes it (calls.py ``wire_json``): the same JSON as the standard library's
for what a run holds, including what orjson cannot encode (integers beyond 64 bits)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from stepline_gateway.calls import wire_json

BODIES: list[Any] = [
    {"event": {"name": "shop/pay", "data": {"n": 1, "ok": True, "none": None}}, "steps": {}},
    {"steps": {"h": {"data": [1.5, -0.0, 1e300, "naïve ☃", {"nested": [[]]}]}}},
    {"steps": {"h": {"data": 2**70}}, "event": {"data": {"small": -(2**63)}}},
    {"steps": {"h": {"data": {"big": [10**40, -(10**40)]}}}},
]


@pytest.mark.parametrize("body", BODIES, ids=["plain", "floats-and-text", "big-int", "big-ints-nested"])
def test_the_body_decodes_to_what_was_encoded(body: dict[str, Any]) -> None:
    encoded = wire_json(body)
    assert json.loads(encoded) == body
    assert b" " not in encoded.replace(b"na\xc3\xafve \xe2\x98\x83", b"")  # compact
