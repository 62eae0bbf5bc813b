"""The body guard: ASGI middleware that refuses a POST body before anything parses it."""

from __future__ import annotations

import asyncio
import re
from itertools import accumulate

from poetry_lm.serve import schemas as s
from poetry_lm.serve.errors import error

# removed in turn: a JSON text's escapes (\" among them), its strings, all but its brackets
ESCAPE = re.compile(rb"\\.")
STRING = re.compile(rb'"[^"]*"')
NOT_BRACKET = re.compile(rb"[^\[\]{}]")


def depth(body: bytes) -> int:
    """How deep the arrays and objects of a JSON text nest (a bracket inside a string does not
    count), or 0 for a text with too few brackets to nest deeper than ``MAX_DEPTH``. Linear in
    the body's length: no pattern here can backtrack."""
    if body.count(b"[") + body.count(b"{") <= s.MAX_DEPTH:
        return 0
    brackets = NOT_BRACKET.sub(b"", STRING.sub(b"", ESCAPE.sub(b"", body)))
    return max(accumulate(1 if b in b"[{" else -1 for b in brackets), default=0)


def unreadable(body: bytes) -> str | None:
    """Why a whole body cannot be read as the API's JSON, in one sentence; None if it can
    (JSON's own syntax is the parser's to refuse: 422, "the body is not valid JSON")."""
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as err:
        return f"the body is not UTF-8 text (byte {err.start} is {body[err.start]:#04x})"
    if depth(body) > s.MAX_DEPTH:
        return f"the body nests arrays and objects more than {s.MAX_DEPTH} deep"
    return None


class TooBig(Exception):
    pass


class BodyGuard:
    """ASGI middleware for POSTs: the body must be declared JSON (else 415), at most ``limit``
    bytes (else 413), sent within the app's ``state.read_timeout`` seconds (else 408), UTF-8
    and nested at most ``MAX_DEPTH`` deep (else 422), checked before anything parses it. A
    refusal before the whole body is read closes the connection: a client gone quiet
    mid-body holds none."""

    def __init__(self, app, limit: int = s.MAX_BODY_BYTES):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        headers, close = dict(scope["headers"]), {"connection": "close"}
        kind = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        if kind != b"application/json":
            message = "send the body as JSON, with Content-Type: application/json"
            return await error(415, message, close)(scope, receive, send)
        too_big = error(413, f"the body is larger than {self.limit} bytes", close)
        length = headers.get(b"content-length", b"0")
        if not length.isdigit() or int(length) > self.limit:
            return await too_big(scope, receive, send)
        seconds = scope["app"].state.read_timeout
        try:
            async with asyncio.timeout(seconds):
                body = await self.read(receive)
        except TooBig:
            return await too_big(scope, receive, send)
        except TimeoutError:
            message = f"the body was not sent within {seconds:g} s"
            return await error(408, message, close)(scope, receive, send)
        if body is None:  # the client went away
            return
        if why := unreadable(body):
            return await error(422, why)(scope, receive, send)
        return await self.app(scope, replayed(body, receive), send)

    async def read(self, receive) -> bytes | None:
        """The whole body (None if the client disconnects), or TooBig past ``limit``."""
        body, more = b"", True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.limit:
                raise TooBig
        return body


def replayed(body: bytes, receive):
    """``receive`` for the app: the body already read, then the client's own messages."""
    sent = False

    async def replay():
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay
