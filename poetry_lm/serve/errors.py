"""How the service answers what goes wrong: ``{"detail": "one sentence"}`` with a 4xx status
for what the client caused, a 500 (logged, with no traceback sent) for anything else.

Only the project's own errors are the client's fault (USER_ERRORS): a ValueError from
elsewhere (numpy's, torch's) inside a request is a bug, so it is a 500, not a 400.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from poetry_lm.model.errors import CheckpointError
from poetry_lm.serve import schemas as s
from poetry_lm.settings import SettingError
from poetry_lm.text.corpus import CorpusError

# the project's errors that a request can cause, each one sentence (KeywordError and
# UnknownCharacterError are SettingErrors, PoemTextError a CorpusError)
USER_ERRORS = (SettingError, CorpusError, CheckpointError)

log = logging.getLogger("poetry_lm.serve")


def error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"detail": message}, status_code=status, headers=headers)


def validation_message(exc: RequestValidationError) -> str:
    """pydantic's list of errors → one sentence about the first."""
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"] if part != "body") or "the body"
    if first["type"] == "json_invalid":
        return "the body is not valid JSON"
    if first["type"] == "missing":
        return f"{where} is required"
    if first["type"] == "extra_forbidden":
        return f"unknown field {where!r}"
    if first["type"] == "string_unicode":  # "\udfff" in JSON: half of a UTF-16 pair, alone
        return f"{where}: a lone surrogate (\\ud800 to \\udfff) is not a character"
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "value_error" and where == "the body":
        return message  # a limit across fields, blamed on one by its own words (schemas.fault)
    return f"{where}: {message}"


@contextmanager
def at_fault(field: str):
    """A ValueError inside → 400 whose sentence begins with ``field``'s name, as a 422's begins
    with its field's; a SettingError blames its own field (``keywords``, or ``max_len`` where
    the poem's length leaves no room), in the API's names. Wrap only the reading of the
    request's own input, whose plain ValueErrors (poet.py) are the client's."""
    try:
        yield
    except SettingError as err:
        raise HTTPException(400, str(s.setting_fault(err, field))) from None
    except ValueError as err:
        raise HTTPException(400, str(s.fault(field, str(err)))) from None


async def invalid(request: Request, exc: RequestValidationError):
    return error(422, validation_message(exc))


async def user_error(request: Request, exc: Exception):
    return error(400, str(exc))


async def unexpected(request: Request, exc: Exception):
    """A bug: logged with its traceback here, one sentence to the client."""
    log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    return error(500, f"the server failed on this request ({type(exc).__name__})")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, invalid)
    for kind in USER_ERRORS:
        app.add_exception_handler(kind, user_error)
    app.add_exception_handler(Exception, unexpected)
