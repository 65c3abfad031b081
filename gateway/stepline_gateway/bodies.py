"""Request bodies of the input routes: read up to a limit, then parsed as JSON (storable.parse).

Used by ingest and sync (api.py) and by the checkpoint API (checkpoint.py). A body over the limit is refused
with 413 before it is all read; one that is not JSON, or nested too deeply, with 400.
"""

from __future__ import annotations

from starlette.requests import ClientDisconnect, Request

from stepline_gateway import storable
from stepline_gateway.errors import BadRequest


async def read(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise BadRequest(f"the body is {declared} bytes, over the limit of {limit} bytes", status=413)
    chunks = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise BadRequest(f"the body is over the limit of {limit} bytes", status=413)
            chunks.append(chunk)
    except ClientDisconnect:
        raise BadRequest("the client went away before sending the whole body") from None
    return b"".join(chunks)


async def read_json(request: Request, limit: int) -> storable.Document:
    """The body as a JSON document (values Postgres refuses still need ``storable.problem``)."""
    try:
        return storable.parse_document(await read(request, limit))
    except storable.InvalidJson as err:
        raise BadRequest(f"the body is not valid JSON: {err}") from None
