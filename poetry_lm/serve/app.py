"""The web service: a JSON API (OpenAPI docs at ``/docs``) and one self-contained page at ``/``.

``create_app(checkpoint)`` loads the model once and assembles the app: the routes, one
``APIRouter`` per resource (``serve/routes/``), get the model and the batcher through the
dependencies of ``serve/deps.py``. Requests that need the model become jobs of one
:class:`~poetry_lm.serve.batcher.Batcher`, whose single thread decodes concurrent generate
requests with the same options as one batch.

Errors a client can cause get a 4xx status and ``{"detail": "one sentence"}``, never a
traceback; the sentence begins with the request field at fault (``"starts: …"``): 400 for
input the model cannot use (an unknown character, a start that does not fit the form), 408
when a request outlasts the time limit (its answer is cut off and the server carries on; a
batch already decoding finishes, as every request's size is bounded) or its body is not sent
within the read time limit (and the connection is closed), 413 for a body over 64 KiB, 415 for
a body that is not declared JSON, 422 for a body that is not UTF-8 or nests too deep and for a
field that is missing, of the wrong type or out of its limits, 429 when too many rows are
already waiting. Only the project's own errors are the client's; anything else is a 500,
logged (``serve/errors.py``).

The docs at ``/docs`` (Swagger UI) and ``/redoc`` load their scripts from the package
(fastapi-offline), never from the internet.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

from poetry_lm import __version__
from poetry_lm.paths import SHIPPED_MODEL
from poetry_lm.serve import schemas as s
from poetry_lm.serve.batcher import Batcher
from poetry_lm.serve.errors import install_error_handlers
from poetry_lm.serve.guard import BodyGuard
from poetry_lm.serve.routes import check, generate, page, rewrite, score
from poetry_lm.serving import ServeSettings
from poetry_lm.writing.writer import Writer

DESCRIPTION = f"""Write, score, rewrite and check Tang poems with a character-level LSTM.

Text in either script is accepted. Limits, enforced on every request: at most
{s.MAX_STARTS} start texts of {s.MAX_START_CHARS} characters, {s.MAX_POEMS} poems
(starts × n), best_of or beam {s.MAX_WIDTH}, {s.MAX_REQUEST_ROWS} decoding rows (poems ×
best_of or beam), max_len {s.MAX_LEN} (only without a form), a title {s.MAX_TITLE_CHARS} Chinese
characters ({s.MAX_TITLE_TEXT} as sent, marks and spaces included), prime
{s.MAX_PRIME_CHARS}, acrostic {s.MAX_ACROSTIC_CHARS}, a poem to score, check or rewrite
{s.MAX_POEM_CHARS} characters, {s.MAX_CANDIDATES} rewrite candidates, a body
{s.MAX_BODY_BYTES // 1024} KiB of UTF-8 nesting at most {s.MAX_DEPTH} arrays and objects deep,
and a time limit per request (408 past it) and on sending its body (408, and the connection
closed). Keywords: at most {s.MAX_KEYWORDS}, of {s.MAX_KEYWORD_CHARS} characters.

Errors: 400 input the model cannot use, 408 too slow, 413 body too large, 415 not JSON,
422 a body not UTF-8 or nested too deep, a field missing, mistyped or out of limits (a lone
surrogate is not a character), 429 too many requests waiting; each with
`{{"detail": "one sentence"}}`, which begins with the field at fault (`"keywords: …"`)."""


DEFAULTS = ServeSettings()
ROUTERS = (page.router, generate.router, score.router, rewrite.router, check.router)


@asynccontextmanager
async def lifespan(app: FastAPI):
    yield
    app.state.batcher.close(wait=0)  # uvicorn waited --shutdown-timeout for the requests


def create_app(
    checkpoint: Path | str = SHIPPED_MODEL, settings: ServeSettings = DEFAULTS
) -> FastAPI:
    """The app, with the model loaded from ``checkpoint`` (raises CheckpointError if it cannot
    be) and the batcher's window, rows and the time limit from ``settings``. The routes read
    the model, the batcher and the timeout from ``app.state`` (serve/deps.py), the body guard
    its read time limit (serve/guard.py)."""
    poet = Writer(checkpoint)
    _ = poet.step  # packed once, before the first request (a backward model fails here)
    batcher = Batcher(settings.window, settings.batch_rows)
    app = FastAPIOffline(
        title="poetry_lm", version=__version__, description=DESCRIPTION, lifespan=lifespan
    )
    app.add_middleware(BodyGuard)
    app.state.poet, app.state.batcher, app.state.timeout = poet, batcher, settings.timeout
    app.state.read_timeout = settings.read_timeout
    install_error_handlers(app)
    for router in ROUTERS:
        app.include_router(router)
    return app
