"""Stepline: durable functions made of checkpointed steps.

client = stepline.Client("shop")

@client.function(id="welcome", trigger="user/signed-up")
async def welcome(ctx: stepline.Context) -> str:
    user = await ctx.step.run("load-user", load_user, ctx.event.data["id"])
    await ctx.step.run("send-email", send_welcome, user)
    return "sent"

stepline.fastapi.serve(app, client, [welcome])   # or stepline.asgi.serve_app(client, [welcome])
"""

from stepline.client import Client, SyncAnswer
from stepline.config import SDK_VERSION
from stepline.context import Context, Step
from stepline.errors import (
    ConfigError,
    NonRetriableError,
    RetryAfterError,
    SendEventError,
    StepError,
    SteplineError,
)
from stepline.function import Function, TriggerCron, TriggerEvent
from stepline.handler import Handler
from stepline.protocol import Event

__version__ = SDK_VERSION

__all__ = [
    "Client",
    "ConfigError",
    "Context",
    "Event",
    "Function",
    "Handler",
    "NonRetriableError",
    "RetryAfterError",
    "SendEventError",
    "Step",
    "StepError",
    "SteplineError",
    "SyncAnswer",
    "TriggerCron",
    "TriggerEvent",
    "__version__",
]
