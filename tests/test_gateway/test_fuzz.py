"""Thousands of random requests per input route, and not one answers 500.

Bodies are valid ones (tests/test_gateway/inputs.py) mutated by hypothesis: a field replaced by a hostile
value (NUL characters, lone surrogates, huge or non-finite numbers, deep nesting, wrong types), removed or
added, then encoded as JSON in several ways (escaped, raw UTF-8 with surrogates, cut short) or replaced by
random bytes; query strings and path ids are random text. Examples are derived from a fixed seed
(``derandomize``), so a run is repeatable; requests go in-process to a real gateway on a real database.
"""

from __future__ import annotations

import copy
import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support import RunningGateway, in_process_gateway, route
from tests.test_gateway.inputs import RUN_ID, SERVE_URL, checkpoint, event, nested, sync

EXAMPLES = 2000
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)


class RawJson:
    """JSON text put into a document as it is (documents too deep for json.dumps to write)."""

    def __init__(self, text: str) -> None:
        self.text = text


# Characters of every kind, NUL and lone surrogates included.
hostile_text = st.text(st.characters(codec=None, categories=None), max_size=12) | st.sampled_from(
    [
        "",
        "\x00",
        "a\x00b",
        "\ud800",
        "\udfff",
        "\ud83d",
        "x" * 300,
        "1h",
        "0 8 * * *",
        "http://h:99999/",
        "NaN",
    ]
)
hostile_numbers = (
    st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from(
        [2**63, 2**63 - 1, -(2**63) - 1, 2**64, 10**400, 253_402_300_800_000, -1, 0, True, False]
    )
)
scalars = st.none() | st.booleans() | hostile_numbers | hostile_text
hostile_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(hostile_text, children, max_size=4),
    max_leaves=12,
) | st.integers(90, 1200).map(lambda depth: RawJson(nested(depth)))


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            found += paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += paths(child, (*prefix, index))
    return found


def replaced(document: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    parent = document
    for part in path[:-1]:
        parent = parent[part]
    parent[path[-1]] = new
    return document


def removed(document: Any, path: tuple[Any, ...]) -> Any:
    if not path:
        return document
    parent = document
    for part in path[:-1]:
        parent = parent[part]
    del parent[path[-1]]
    return document


@st.composite
def mutated(draw: st.DrawFn, template: Any) -> Any:
    document = copy.deepcopy(template)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(paths(document)))
        action = draw(st.sampled_from(["replace", "replace", "remove", "add"]))
        if action == "replace":
            document = replaced(document, path, draw(hostile_values))
        elif action == "remove":
            document = removed(document, path)
        else:
            target = document
            for part in path:
                target = target[part]
            if isinstance(target, dict):
                target[draw(hostile_text)] = draw(hostile_values)
            elif isinstance(target, list):
                target.append(draw(hostile_values))
        if isinstance(document, RawJson):
            break
    return document


def dumps(document: Any, *, ascii_only: bool) -> str:
    raws: dict[str, str] = {}

    def placeholder(value: Any) -> str:
        key = f"@@raw{len(raws)}@@"
        raws[key] = value.text
        return key

    text = json.dumps(document, allow_nan=True, ensure_ascii=ascii_only, default=placeholder)
    for key, raw in raws.items():
        text = text.replace(f'"{key}"', raw)
    return text


@st.composite
def encoded(draw: st.DrawFn, template: Any) -> bytes:
    """A mutated document as a body: JSON escaped or raw, cut short, or random bytes now and then."""
    kind = draw(st.sampled_from(["ascii", "ascii", "utf-8", "cut", "bytes"]))
    if kind == "bytes":
        return draw(st.binary(max_size=64))
    document = draw(mutated(template))
    text = dumps(document, ascii_only=kind != "utf-8")
    data = text.encode("utf-8", "surrogatepass")
    if kind == "cut":
        return data[: draw(st.integers(0, max(0, len(data) - 1)))]
    return data


def assert_not_500(response: Any, what: Any) -> None:
    assert response.status_code < 500, (what, response.status_code, response.text[:500])
    if response.status_code >= 400 and response.headers.get("content-type", "").startswith(
        "application/json"
    ):
        assert isinstance(response.json().get("error"), str), response.text


@pytest.fixture(scope="module")
async def gw(module_database_url: str) -> AsyncIterator[RunningGateway]:
    async with in_process_gateway(module_database_url, concurrency=0) as gateway:
        await gateway.publish(route("shop-welcome", SERVE_URL, {"event": "shop/order.created"}))
        yield gateway


JSON = {"content-type": "application/json"}


@FUZZ
@given(content=encoded([event(), event(id="x-1", ts=1700000000000, user={"id": 1}, v="1")]))
async def test_ingest_never_answers_500(gw: RunningGateway, content: bytes) -> None:
    assert_not_500(await gw.http.post("/e/fuzz-key", content=content, headers=JSON), content)


@FUZZ
@given(content=encoded(event(id="x-2", user={"id": 1})))
async def test_sending_events_never_answers_500(gw: RunningGateway, content: bytes) -> None:
    assert_not_500(await gw.http.post("/v1/events", content=content, headers=JSON), content)


SYNC = sync()
SYNC["functions"][0].update(
    cancel=[{"event": "shop/order.cancelled", "match": "data.order", "timeout": "1h"}],
    checkpoint={"batch_steps": 1, "batch_interval": "0s", "max_runtime": "10s"},
    concurrency=[{"limit": 2, "key": "event.data.order", "scope": "env"}, {"limit": 5}],
    throttle={"limit": 3, "period": "1m", "burst": 1, "key": "event.data.order"},
    rateLimit={"limit": 10, "period": "1h", "key": "event.data.order"},
    debounce={"period": "10s", "key": "event.data.order", "timeout": "1m"},
    batchEvents={"maxSize": 10, "timeout": "5s", "key": "event.data.order", "if": "event.data.small"},
    priority={"run": "event.data.p"},
    idempotency="event.data.order",
    timeouts={"start": "5m", "finish": "1h"},
    singleton={"mode": "skip", "key": "event.data.order"},
    retryPolicy={
        "backoff": "Linear",
        "initialDelay": "1s",
        "maxDelay": "1m",
        "jitterPercent": 10,
        "timeout": "30s",
    },
)
SYNC["functions"].append(
    {
        **copy.deepcopy(SYNC["functions"][0]),
        "id": "shop-nightly",
        "triggers": [{"cron": "TZ=Europe/Paris 0 8 * * *"}],
    }
)


@FUZZ
@given(content=encoded(SYNC))
async def test_sync_never_answers_500(gw: RunningGateway, content: bytes) -> None:
    assert_not_500(await gw.http.post("/fn/register", content=content, headers=JSON), content)


@FUZZ
@given(content=encoded(checkpoint()))
async def test_checkpoint_never_answers_500(gw: RunningGateway, content: bytes) -> None:
    response = await gw.http.post(f"/v1/checkpoint/{RUN_ID}/async", content=content, headers=JSON)
    assert_not_500(response, content)


def quoted(text: str) -> str:
    return quote(text.encode("utf-8", "surrogatepass"), safe="")


parameter_values = hostile_text | st.sampled_from(
    ["2025-01-31T08:00:00Z", "0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00", "50", "0", "²", "1e2"]
)


@FUZZ
@given(
    path=st.sampled_from(["/v1/runs", "/v1/events", "/v1/functions/run-counts"]),
    params=st.lists(
        st.tuples(
            st.sampled_from(["since", "until", "cursor", "limit", "status", "function", "name"])
            | hostile_text,
            parameter_values,
        ),
        max_size=4,
    ),
)
async def test_listing_never_answers_500(
    gw: RunningGateway, path: str, params: list[tuple[str, str]]
) -> None:
    query = "&".join(f"{quoted(key)}={quoted(value)}" for key, value in params)
    response = await gw.http.get(f"{path}?{query}")
    assert_not_500(response, query)


@FUZZ
@given(
    template=st.sampled_from(["/v1/runs/{}", "/v1/events/{}", "/v1/runs/{}/replay", "/v1/runs/{}/cancel"]),
    value=hostile_text.filter(bool),
)
async def test_ids_in_paths_never_answer_500(gw: RunningGateway, template: str, value: str) -> None:
    path = template.format(quoted(value))
    method = "POST" if template.endswith(("replay", "cancel")) else "GET"
    assert_not_500(await gw.http.request(method, path), path)


@pytest.fixture(scope="module")
async def locked(module_database_url: str) -> AsyncIterator[RunningGateway]:
    """A production gateway: the dashboard asks for the API token."""
    async with in_process_gateway(module_database_url, dev=False, event_keys=["k"], concurrency=0) as gateway:
        yield gateway


@FUZZ
@given(content=st.binary(max_size=200) | hostile_text.map(lambda t: ("token=" + quoted(t)).encode()))
async def test_sign_in_never_answers_500(locked: RunningGateway, content: bytes) -> None:
    response = await locked.http.post("/login", content=content, headers={"authorization": ""})
    assert response.status_code in (303, 401, 413), (content, response.status_code)
