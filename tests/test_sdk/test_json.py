"""The SDK's wire JSON: with orjson (when installed) and with the standard library's json alone, the same
values are accepted, come back the same, and the same are refused."""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
from typing import Any

import pytest
import stepline.protocol
from stepline.protocol import as_json, encode_json

pytest.importorskip("orjson")

ACCEPTED: list[Any] = [
    {"step": 1, "i": 7, "nested": {"list": [1, 2.5, "x", True, None]}},
    [{"id": "abc", "op": "StepRun", "data": {"é": "ü", "emoji": "\U0001f680"}}],
    {"big": 2**70, "small": -(2**63)},
    {"tiny": 1e-05, "huge": 1.5e300, "negzero": -0.0},
    ("a", "tuple"),
    {"text": "null is a word"},
    None,
]
REFUSED: list[Any] = [
    math.nan,
    {"x": math.inf},
    [1, -math.inf],
    {"when": datetime.datetime(2026, 1, 1)},
]


@dataclasses.dataclass
class Point:
    x: int


@pytest.fixture(params=["orjson", "json"])
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "json":
        monkeypatch.setattr(stepline.protocol, "orjson", None)
    name: str = request.param
    return name


@pytest.mark.parametrize("value", ACCEPTED)
def test_values_come_back_as_a_json_reader_gives_them(backend: str, value: Any) -> None:
    encoded = encode_json(value)
    assert json.loads(encoded) == json.loads(json.dumps(value))
    assert as_json(value) == json.loads(json.dumps(value))
    assert b" " not in encoded.replace(b"null is a word", b"")  # compact


@pytest.mark.parametrize("value", [*REFUSED, Point(1), {1: "int key"}])
def test_the_same_values_are_refused_or_converted_by_both(backend: str, value: Any) -> None:
    try:
        expected: Any = json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as err:
        with pytest.raises(type(err)):
            encode_json(value)
        with pytest.raises(type(err)):
            as_json(value)
    else:
        assert json.loads(encode_json(value)) == expected
