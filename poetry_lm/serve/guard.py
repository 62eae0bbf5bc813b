"""The body guard: ASGI middleware that refuses a POST body before anything parses it."""

from __future__ import annotations

from poetry_lm.serve import schemas as s
from poetry_lm.serve.errors import error


class BodyGuard:
    """ASGI middleware for ``/api/`` POSTs: the body must be declared JSON (else 415) and at
    most ``limit`` bytes (else 413), checked while it is read, before anything parses it."""

    def __init__(self, app, limit: int = s.MAX_BODY_BYTES):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        kind = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        if kind != b"application/json":
            reply = error(415, "send the body as JSON, with Content-Type: application/json")
            return await reply(scope, receive, send)
        too_big = error(413, f"the body is larger than {self.limit} bytes")
        length = headers.get(b"content-length", b"0")
        if not length.isdigit() or int(length) > self.limit:
            return await too_big(scope, receive, send)
        body, more = b"", True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.limit:
                return await too_big(scope, receive, send)
        replayed = False

        async def replay():
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        return await self.app(scope, replay, send)
