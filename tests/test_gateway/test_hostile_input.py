"""Hostile input to every input route answers 4xx with a message naming what is wrong, and stores nothing.

The cases are the ones that answered 500 before: JSON nested a thousand deep, NUL characters and lone
surrogates in names, ids and data, a ``ts`` at or past 2^63 or in the year 10000, numbers JSON has no
room for (``1e400``, ``NaN``, ``-Infinity``), odd ``since`` / ``cursor`` / ``limit`` values, and syncs whose
fields have the wrong types. Requests go in-process to a real gateway on a real database.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from stepline_gateway.events import MAX_TS

from tests.support import RunningGateway, in_process_gateway, route
from tests.test_gateway.inputs import (
    QI_ID,
    RUN_ID,
    SERVE_URL,
    checkpoint,
    event,
    nested,
    stored,
    sync,
    sync_function,
)


def body(value: Any) -> bytes:
    return json.dumps(value).encode()


def cursor(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode()


DEEP = b'{"name": "a", "data": ' + nested(1000).encode() + b"}"
RATHER_DEEP = b'{"name": "a", "data": ' + nested(150).encode() + b"}"

EVENT_CASES: list[tuple[str, bytes, int, str]] = [
    ("nested 1000 deep", DEEP, 400, "nested more than 100 levels deep"),
    ("nested 150 deep", RATHER_DEEP, 400, "nesting deeper than 100 levels at data.a.a"),
    ("NUL in the name", body(event(name="shop/\x00order")), 400, "a NUL character at name"),
    ("NUL in the id", body(event(id="order-\x00-42")), 400, "a NUL character at id"),
    ("NUL in data", body(event(data={"note": "gi\x00ft"})), 400, "a NUL character at data.note"),
    ("NUL in a key", body(event(data={"no\x00te": 1})), 400, "a NUL character in a key at data"),
    ("NUL in user", body(event(user={"email": "\x00"})), 400, "a NUL character at user.email"),
    ("lone surrogate in the name", b'{"name": "shop/\\ud800"}', 400, "surrogate (invalid Unicode) at name"),
    ("lone surrogate in the id", b'{"name": "a", "id": "\\udfff"}', 400, "surrogate (invalid Unicode) at id"),
    (
        "lone surrogate in data",
        b'{"name": "a", "data": {"x": ["\\ud83d"]}}',
        400,
        "(invalid Unicode) at data.x[0]",
    ),
    (
        "raw surrogate bytes",
        b'{"name": "a", "data": {"x": "\xed\xa0\x80"}}',
        400,
        "(invalid Unicode) at data.x",
    ),
    ("ts at 2^63", body(event(ts=2**63)), 400, "'ts' must be a timestamp"),
    ("ts at 2^63 - 1", body(event(ts=2**63 - 1)), 400, "'ts' must be a timestamp"),
    ("ts in the year 10000", body(event(ts=MAX_TS + 1)), 400, "'ts' must be a timestamp"),
    ("negative ts", body(event(ts=-1)), 400, "'ts' must be a timestamp"),
    ("fractional ts", body(event(ts=1.5)), 400, "'ts' must be a timestamp"),
    ("ts true", body(event(ts=True)), 400, "'ts' must be a timestamp"),
    (
        "1e400 in data",
        b'{"name": "a", "data": {"x": 1e400}}',
        400,
        "a number JSON cannot hold (inf) at data.x",
    ),
    (
        "NaN in data",
        b'{"name": "a", "data": {"x": NaN}}',
        400,
        "a number JSON cannot hold (nan) at data.x",
    ),
    (
        "-Infinity in data",
        b'{"name": "a", "data": {"y": [1, -Infinity]}}',
        400,
        "a number JSON cannot hold (-inf) at data.y[1]",
    ),
    (
        "Infinity as ts",
        b'{"name": "a", "ts": Infinity}',
        400,
        "a number JSON cannot hold (inf) at ts",
    ),
    ("an int of 5000 digits", b'{"name": "a", "data": {"x": ' + b"9" * 5000 + b"}}", 400, "not valid JSON"),
    ("bytes that are not UTF-8", b'{"name": "\xff"}', 400, "not valid JSON"),
    ("an empty body", b"", 400, "not valid JSON"),
    ("null", b"null", 400, "is not a JSON object"),
    ("a number for the name", body(event(name=5)), 400, "has no name"),
    ("a number for the id", body(event(id=5)), 400, "'id' must be a string"),
    ("a list for user", body(event(user=[1])), 400, "'user' must be a JSON object"),
    ("a number for v", body(event(v=2)), 400, "'v' (the event's version) must be a string"),
    ("a name of 257 characters", body(event(name="n" * 257)), 400, "longer than 256"),
]


@pytest.fixture(scope="module")
async def gw(module_database_url: str) -> AsyncIterator[RunningGateway]:
    """One gateway for the module's cases: refused requests store nothing, so they can share it."""
    async with in_process_gateway(
        module_database_url, concurrency=0, max_body_bytes=8 * 1024 * 1024
    ) as gateway:
        # Events are routed (their runs are planned, due at their ts) but no call is made: concurrency 0.
        await gateway.publish(
            route("shop-welcome", SERVE_URL, {"event": "a"}),
            route("shop-orders", SERVE_URL, {"event": "shop/order.created"}),
        )
        yield gateway


@pytest.fixture
def database_url(module_database_url: str) -> str:
    return module_database_url


async def refused(gw: RunningGateway, database_url: str, response_of: Any, status: int, message: str) -> None:
    before = await stored(database_url)
    response = await response_of()
    assert response.status_code == status, response.text
    assert message in response.json()["error"], response.json()["error"]
    assert await stored(database_url) == before, "a refused request stored something"


@pytest.mark.parametrize("path", ["/e/key", "/v1/events"])
@pytest.mark.parametrize(
    ("case", "content", "status", "message"), EVENT_CASES, ids=[c[0] for c in EVENT_CASES]
)
async def test_hostile_events_are_refused(
    gw: RunningGateway, database_url: str, path: str, case: str, content: bytes, status: int, message: str
) -> None:
    headers = {"content-type": "application/json"}
    await refused(
        gw, database_url, lambda: gw.http.post(path, content=content, headers=headers), status, message
    )
    # The same event inside a batch with a good one: the whole batch is refused.
    if content.startswith(b"{"):
        batch = b"[" + body(event()) + b"," + content + b"]"
        await refused(
            gw, database_url, lambda: gw.http.post(path, content=batch, headers=headers), status, message
        )


async def test_the_ends_of_the_ts_range_are_accepted(gw: RunningGateway) -> None:
    ids = await gw.send(event(ts=1), event(ts=MAX_TS, id="the-last-millisecond"))
    assert ids[1] == "the-last-millisecond"
    stored_event = (await gw.http.get("/v1/events/the-last-millisecond")).json()
    assert stored_event["ts"] == MAX_TS


def without(value: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in value.items() if k != key}


def step(**fields: Any) -> dict[str, Any]:
    base = sync_function()["steps"]["step"]
    return {"steps": {"step": {**base, **fields}}}


SYNC_CASES: list[tuple[str, Any, str]] = [
    (
        "a trigger event that is a number",
        sync(functions=[sync_function(triggers=[{"event": 5}])]),
        "function shop-notify (functions[0]): triggers[0].event: Input should be a valid string",
    ),
    (
        "a function id that is a number",
        sync(functions=[sync_function(id=7)]),
        "functions[0]): id: Input should be a valid string",
    ),
    (
        "an empty function id",
        sync(functions=[sync_function(id="")]),
        "id: String should have at least 1 character",
    ),
    (
        "a name that is a list",
        sync(functions=[sync_function(name=["n"])]),
        "name: Input should be a valid string",
    ),
    ("an app id that is a number", sync(appname=3), "appname: Input should be a valid string"),
    ("no app id", without(sync(), "appname"), "the sync names no app"),
    (
        "a URL that is a number",
        sync(functions=[sync_function(**step(runtime={"type": "http", "url": 8000}))]),
        "steps.step.runtime.url: Input should be a valid string",
    ),
    (
        "a URL without a scheme",
        sync(functions=[sync_function(**step(runtime={"type": "http", "url": "shop:8000"}))]),
        "is not an absolute http:// or https:// URL",
    ),
    (
        "a URL with a bad port",
        sync(functions=[sync_function(**step(runtime={"type": "http", "url": "http://h:99999/"}))]),
        "is not a URL",
    ),
    (
        "an ftp URL",
        sync(functions=[sync_function(**step(runtime={"type": "http", "url": "ftp://shop/"}))]),
        "is not an absolute http:// or https:// URL",
    ),
    (
        "a Connect runtime",
        sync(functions=[sync_function(**step(runtime={"type": "ws", "url": SERVE_URL}))]),
        "Inngest Connect",
    ),
    (
        "retries as a string",
        sync(functions=[sync_function(**step(retries={"attempts": "3"}))]),
        "retries.attempts: Input should be a valid integer",
    ),
    (
        "retries true",
        sync(functions=[sync_function(**step(retries={"attempts": True}))]),
        "retries.attempts: Input should be a valid integer",
    ),
    (
        "21 retries",
        sync(functions=[sync_function(**step(retries={"attempts": 21}))]),
        "less than or equal to 20",
    ),
    (
        "negative retries",
        sync(functions=[sync_function(**step(retries={"attempts": -1}))]),
        "greater than or equal to 0",
    ),
    ("no serve step", sync(functions=[sync_function(steps={})]), "steps.step is missing"),
    (
        "steps that are a list",
        sync(functions=[sync_function(steps=[1])]),
        "steps: Input should be a valid dictionary",
    ),
    (
        "a trigger with event and cron",
        sync(functions=[sync_function(triggers=[{"event": "a", "cron": "* * * * *"}])]),
        "exactly one of 'event' or 'cron'",
    ),
    (
        "a trigger with neither",
        sync(functions=[sync_function(triggers=[{}])]),
        "exactly one of 'event' or 'cron'",
    ),
    (
        "a trigger that is a string",
        sync(functions=[sync_function(triggers=["a"])]),
        "triggers[0]: Input should be",
    ),
    (
        "eleven triggers",
        sync(functions=[sync_function(triggers=[{"event": f"e{n}"} for n in range(11)])]),
        "at most 10 items",
    ),
    (
        "an expression that is not CEL",
        sync(functions=[sync_function(triggers=[{"event": "a", "expression": "event.data.x >"}])]),
        "is not valid CEL",
    ),
    (
        "a cron that is not one",
        sync(functions=[sync_function(triggers=[{"cron": "every day"}])]),
        "not a valid cron",
    ),
    (
        "a cron that never fires",
        sync(functions=[sync_function(triggers=[{"cron": "0 0 31 2 *"}])]),
        "never fires",
    ),
    (
        "a cron in an unknown zone",
        sync(functions=[sync_function(triggers=[{"cron": "TZ=Mars/Olympus 0 8 * * *"}])]),
        "unknown time zone",
    ),
    (
        "a cancel rule without event",
        sync(functions=[sync_function(cancel=[{"if": "true"}])]),
        "cancel[0].event: Field required",
    ),
    (
        "a cancel timeout that is a number",
        sync(functions=[sync_function(cancel=[{"event": "a", "timeout": 60}])]),
        "cancel[0].timeout: Input should be a valid string",
    ),
    (
        "a cancel timeout that is not a duration",
        sync(functions=[sync_function(cancel=[{"event": "a", "timeout": "soon"}])]),
        "is not a duration",
    ),
    (
        "a cancel match that is not CEL",
        sync(functions=[sync_function(cancel=[{"event": "a", "match": "data.("}])]),
        "is not valid CEL",
    ),
    (
        "negative batch steps",
        sync(functions=[sync_function(checkpoint={"batch_steps": -1})]),
        "checkpoint.batch_steps",
    ),
    (
        "a throttle without limit",
        sync(functions=[sync_function(throttle={"period": "1m"})]),
        "throttle.limit: Field required",
    ),
    ("a concurrency that is a string", sync(functions=[sync_function(concurrency="5")]), "concurrency"),
    (
        "a singleton mode of its own",
        sync(functions=[sync_function(singleton={"mode": "queue"})]),
        "singleton.mode",
    ),
    ("a function listed twice", sync(functions=[sync_function(), sync_function()]), "listed twice"),
    ("functions that are an object", sync(functions={"a": 1}), "functions: Input should be a valid list"),
    ("a list for a body", [sync()], "the body must be an object"),
    (
        "NUL in a function id",
        sync(functions=[sync_function(id="shop-\x00")]),
        "a NUL character at functions[0].id",
    ),
    (
        "NaN in the payload",
        sync(functions=[sync_function(throttle={"limit": float("nan"), "period": "1m"})]),
        "a number JSON cannot hold (nan) at functions[0].throttle.limit",
    ),
]


@pytest.mark.parametrize(("case", "payload", "message"), SYNC_CASES, ids=[c[0] for c in SYNC_CASES])
async def test_hostile_syncs_are_refused_whole(
    gw: RunningGateway, database_url: str, case: str, payload: Any, message: str
) -> None:
    # A good function beside the bad one is not published either: the sync is validated as a whole.
    if (
        isinstance(payload, dict)
        and isinstance(payload.get("functions"), list)
        and len(payload["functions"]) == 1
    ):
        payload = {**payload, "functions": [*payload["functions"], sync_function(id="shop-fine")]}
    content = json.dumps(payload, allow_nan=True).encode()
    await refused(gw, database_url, lambda: gw.http.post("/fn/register", content=content), 400, message)
    assert "shop-fine" not in {f["id"] for f in (await gw.http.get("/v1/functions")).json()["data"]}


async def test_deep_syncs_are_refused(gw: RunningGateway, database_url: str) -> None:
    for depth, message in (
        (1000, "nested more than 100 levels deep"),
        (150, "nesting deeper than 100 levels"),
    ):
        content = b'{"appname": "shop", "functions": [], "extra": ' + nested(depth).encode() + b"}"
        await refused(
            gw, database_url, lambda c=content: gw.http.post("/fn/register", content=c), 400, message
        )


CHECKPOINT_CASES: list[tuple[str, bytes, int, str]] = [
    ("a list", body([checkpoint()]), 400, "the body must be an object"),
    ("a qi_id that is not one", body(checkpoint(qi_id="x")), 400, "'qi_id' must be the ctx.qi_id"),
    (
        "a work id past 2^63",
        body(checkpoint(qi_id="99999999999999999999:" + QI_ID.split(":")[1])),
        400,
        "'qi_id'",
    ),
    ("unicode digits in the qi_id", body(checkpoint(qi_id="\u0663:" + QI_ID.split(":")[1])), 400, "'qi_id'"),
    ("steps that are not operations", body(checkpoint(steps=[{"op": 1}])), 400, "'steps' must be a list"),
    (
        "NUL in an output",
        body(checkpoint(steps=[{"op": "StepRun", "id": "a", "data": {"note": "\x00"}}])),
        400,
        "output contains a NUL character at data.note: Postgres cannot store it",
    ),
    (
        "NaN in an output",
        b'{"qi_id": "' + QI_ID.encode() + b'", "steps": [{"op": "StepRun", "id": "a", "data": NaN}]}',
        400,
        "output contains a number JSON cannot hold (nan) at data",
    ),
    (
        "an output over 4 MiB",
        body(checkpoint(steps=[{"op": "StepRun", "id": "a", "data": "x" * (4 * 1024 * 1024)}])),
        413,
        "over the limit of 4194304 bytes",
    ),
    (
        "a step id of 300 characters",
        body(checkpoint(steps=[{"op": "StepRun", "id": "a" * 300, "data": 1}])),
        400,
        "not a step hash",
    ),
    (
        "a step name that is a number",
        body(checkpoint(steps=[{"op": "StepRun", "id": "a", "name": 5, "data": 1}])),
        400,
        "name must be a string",
    ),
    (
        "nested 1000 deep",
        b'{"steps": [{"op": "StepRun", "id": "a", "data": ' + nested(1000).encode() + b"}]}",
        400,
        "nested more than",
    ),
]


@pytest.mark.parametrize(
    ("case", "content", "status", "message"), CHECKPOINT_CASES, ids=[c[0] for c in CHECKPOINT_CASES]
)
async def test_hostile_checkpoints_are_refused(
    gw: RunningGateway, database_url: str, case: str, content: bytes, status: int, message: str
) -> None:
    path = f"/v1/checkpoint/{RUN_ID}/async"
    await refused(gw, database_url, lambda: gw.http.post(path, content=content), status, message)


QUERY_CASES: list[tuple[str, str, int, str]] = [
    ("since not a time", "/v1/runs?since=yesterday", 400, "since must be an ISO 8601 time"),
    (
        "since before the year 1 in UTC",
        "/v1/runs?since=0001-01-01T00:00:00%2B05:00",
        400,
        "outside the years 1 to 9999",
    ),
    (
        "until after 9999 in UTC",
        "/v1/runs?until=9999-12-31T23:59:59-05:00",
        400,
        "outside the years 1 to 9999",
    ),
    ("since with a NUL", "/v1/runs?since=2025-01-01%00", 400, "since must be an ISO 8601 time"),
    ("limit 0", "/v1/runs?limit=0", 400, "limit must be a whole number from 1 to 500"),
    ("limit 501", "/v1/runs?limit=501", 400, "limit must be"),
    ("limit -1", "/v1/runs?limit=-1", 400, "limit must be"),
    ("limit superscript two", "/v1/runs?limit=%C2%B2", 400, "limit must be"),
    ("limit Arabic-Indic three", "/v1/events?limit=%D9%A3", 400, "limit must be"),
    ("limit 1e2", "/v1/runs?limit=1e2", 400, "limit must be"),
    ("limit of 30 digits", "/v1/events?limit=" + "9" * 30, 400, "limit must be"),
    ("cursor not base64", "/v1/runs?cursor=%%%", 400, "the cursor is not one this API gave out"),
    (
        "cursor of a key that is not a run id",
        "/v1/runs?cursor=" + cursor("2025-01-01T00:00:00+00:00|x"),
        400,
        "the cursor is not one",
    ),
    (
        "cursor without a time zone",
        "/v1/runs?cursor=" + cursor(f"2025-01-01T00:00:00|{RUN_ID}"),
        400,
        "the cursor is not one",
    ),
    (
        "cursor of bytes not UTF-8",
        "/v1/events?cursor=" + base64.urlsafe_b64encode(b"\xff\xfe|x").decode(),
        400,
        "the cursor is not one",
    ),
    (
        "cursor with a NUL key",
        "/v1/events?cursor=" + cursor("2025-01-01T00:00:00+00:00|a\x00"),
        400,
        "the cursor is not one",
    ),
    (
        "cursor of the year 1 in UTC",
        "/v1/events?cursor=" + cursor("0001-01-01T00:00:00+05:00|e"),
        400,
        "outside the years",
    ),
    (
        "cursor with no key",
        "/v1/events?cursor=" + cursor("2025-01-01T00:00:00+00:00"),
        400,
        "the cursor is not one",
    ),
    ("function with a NUL", "/v1/runs?function=shop%00", 400, "function contains a NUL character"),
    ("name with a NUL", "/v1/events?name=a%00", 400, "name contains a NUL character"),
    ("a name of 2000 characters", "/v1/events?name=" + "n" * 2000, 400, "longer than 1024"),
    ("status of its own", "/v1/runs?status=Sleeping", 400, "status must be one of"),
    (
        "run counts since not a time",
        "/v1/functions/run-counts?since=noon",
        400,
        "since must be an ISO 8601 time",
    ),
    (
        "run counts since year 1",
        "/v1/functions/run-counts?since=0001-01-01T00:00:00%2B01:00",
        400,
        "outside the years",
    ),
    ("an event id with a NUL", "/v1/events/a%00b", 404, "no event with that id"),
    ("an event id of 2000 characters", "/v1/events/" + "e" * 2000, 404, "no event with that id"),
    ("a run id that is not a UUID", "/v1/runs/not-a-run", 404, "run ids are UUIDs"),
    ("a run id with a NUL", "/v1/runs/%00", 404, "run ids are UUIDs"),
]


@pytest.mark.parametrize(("case", "path", "status", "message"), QUERY_CASES, ids=[c[0] for c in QUERY_CASES])
async def test_odd_parameters_are_refused(
    gw: RunningGateway, database_url: str, case: str, path: str, status: int, message: str
) -> None:
    await refused(gw, database_url, lambda: gw.http.get(path), status, message)


@pytest.mark.parametrize("action", ["replay", "cancel"])
@pytest.mark.parametrize("run_id", ["not-a-run", "%00", "00000000-0000-0000-0000-000000000000"])
async def test_run_actions_on_runs_that_cannot_exist(
    gw: RunningGateway, database_url: str, action: str, run_id: str
) -> None:
    await refused(gw, database_url, lambda: gw.http.post(f"/v1/runs/{run_id}/{action}"), 404, "no run")


async def test_the_dashboard_routes_refuse_hostile_input(database_url: str) -> None:
    async with in_process_gateway(database_url, dev=False, event_keys=["k"], concurrency=0) as gw:
        anonymous = {"authorization": ""}
        for content, status in (
            (b"token=%00", 401),
            (b"token=" + b"x" * 5000, 413),
            (b"\xff\xfe", 401),
            (b"", 401),
        ):
            response = await gw.http.post("/login", content=content, headers=anonymous)
            assert response.status_code == status, (content[:20], response.status_code)
        for path in ("/dashboard/%00", "/dashboard/..%2F..%2Fpyproject.toml", "/dashboard/" + "a" * 3000):
            assert (await gw.http.get(path)).status_code == 404, path
        assert (await gw.http.get("/", headers=anonymous)).status_code == 303


@pytest.mark.parametrize(
    "app_id",
    ["no-such-app", "%00", "with%00nul", "%ED%A0%80", "x" * 2000],
    ids=["unknown", "nul", "nul-in", "surrogate", "long"],
)
async def test_removing_an_app_that_cannot_exist_is_refused(
    gw: RunningGateway, database_url: str, app_id: str
) -> None:
    await refused(gw, database_url, lambda: gw.http.delete(f"/v1/apps/{app_id}"), 404, "no app")


async def test_whoami_ignores_what_it_is_not_asked(gw: RunningGateway) -> None:
    response = await gw.http.get("/v1/whoami?namespace=%00&x=%ED%A0%80")
    assert response.status_code == 200, response.text
