"""Stepline: durable functions made of checkpointed steps.

client = stepline.Client("shop")

@client.function(id="welcome", trigger="user/signed-up",
                 cancel_on=[stepline.Cancel(event="user/deleted", match="data.id")], on_failure=alert)
async def welcome(ctx: stepline.Context) -> str:
    user = await ctx.step.run("load-user", load_user, ctx.event.data["id"])
    await ctx.step.sleep("settle", datetime.timedelta(hours=1))
    confirmed = await ctx.step.wait_for_event("confirm", event="user/ok", match="data.id", timeout=86400)
    await ctx.step.invoke("send-email", function=send_welcome, data={"user": user})
    await ctx.step.send_event("announce", {"name": "user/welcomed", "data": {"id": user["id"]}})
    return "sent" if confirmed else "unconfirmed"

app = stepline.asgi.serve_app(client, [welcome])   # any ASGI server: uvicorn module:app
# or stepline.fastapi.serve(app, client, fns), stepline.flask.serve(app, client, fns),
#    urlpatterns = [stepline.django.serve(client, fns)], stepline.wsgi.serve_app(client, fns)

Sequential steps run back to back in one call, their results checkpointed to the gateway once their run
time reaches 100 ms, or with the function's result (``stepline.Checkpoint`` tunes it, ``every_step()`` is
the strictest; ``Client(..., checkpoint=False)`` answers after every step instead).
A plain ``def`` function gets a ``stepline.SyncContext`` whose steps block; ``TriggerEvent("x",
data=Model)`` validates the events' data into a pydantic model; ``stepline.testing.run`` runs a function
in a unit test without a gateway. ``concurrency=``, ``throttle=``, ``debounce=`` and the other options of
``client.function`` control how runs start (``stepline.Concurrency``...), ``retry_policy=`` how attempts
are retried (``stepline.RetryPolicy``).
"""

from stepline.client import Client, SyncAnswer
from stepline.config import SDK_VERSION
from stepline.context import Context, SyncContext
from stepline.errors import (
    ConfigError,
    NonRetriableError,
    RetryAfterError,
    SendEventError,
    StepError,
    SteplineError,
)
from stepline.flow import (
    BatchEvents,
    Concurrency,
    Debounce,
    Priority,
    RateLimit,
    RetryPolicy,
    Singleton,
    Throttle,
    Timeouts,
)
from stepline.function import Cancel, Checkpoint, Function, TriggerCron, TriggerEvent
from stepline.handler import Handler
from stepline.protocol import Event
from stepline.steps import Step, SyncStep

__version__ = SDK_VERSION

__all__ = [
    "BatchEvents",
    "Cancel",
    "Checkpoint",
    "Client",
    "Concurrency",
    "ConfigError",
    "Context",
    "Debounce",
    "Event",
    "Function",
    "Handler",
    "NonRetriableError",
    "Priority",
    "RateLimit",
    "RetryAfterError",
    "RetryPolicy",
    "SendEventError",
    "Singleton",
    "Step",
    "StepError",
    "SteplineError",
    "SyncAnswer",
    "SyncContext",
    "SyncStep",
    "Throttle",
    "Timeouts",
    "TriggerCron",
    "TriggerEvent",
    "__version__",
]
