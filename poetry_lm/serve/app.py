"""The web service: a JSON API (OpenAPI docs at ``/docs``) and one self-contained page at ``/``.

``create_app(checkpoint)`` loads the model once. Requests that need the model become jobs of
one :class:`~poetry_lm.serve.batcher.Batcher`, whose single thread decodes concurrent generate
requests with the same options as one batch.

Errors a client can cause get a 4xx status and ``{"detail": "one sentence"}``, never a
traceback; the sentence begins with the request field at fault (``"starts: …"``): 400 for
input the model cannot use (an unknown character, a start that does not fit the form), 408
when a request outlasts the time limit (its answer is cut off and the server carries on; a
batch already decoding finishes, as every request's size is bounded), 413 for a body over 64
KiB, 415 for a body that is not declared JSON, 422 for a field that is missing, of the wrong
type or out of its limits, 429 when too many rows are already waiting.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
from contextlib import asynccontextmanager, contextmanager
from dataclasses import astuple
from pathlib import Path

import torch
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse

from poetry_lm import __version__
from poetry_lm.decoding.generate import GeneratedPoem, SampleOptions, verses
from poetry_lm.paths import SHIPPED_MODEL
from poetry_lm.prosody.check import check_poem
from poetry_lm.prosody.forms import Constraints, parse_form
from poetry_lm.serve import schemas as s
from poetry_lm.serve.batcher import Batcher, Busy, Job
from poetry_lm.serve.poet import (
    Poet,
    poem_seeds,
    recognise_form,
    rhyme_positions,
    tone_marks,
)
from poetry_lm.settings import SettingError
from poetry_lm.text.corpus import to_simplified, to_traditional

PAGE = Path(__file__).resolve().parent / "page" / "index.html"
DESCRIPTION = f"""Write, score, rewrite and check Tang poems with a character-level LSTM.

Text in either script is accepted. Limits, enforced on every request: at most
{s.MAX_STARTS} start texts of {s.MAX_START_CHARS} characters, {s.MAX_POEMS} poems
(starts × n), best_of or beam {s.MAX_WIDTH}, {s.MAX_ROWS} decoding rows (poems × best_of or
beam), max_len {s.MAX_LEN} (only without a form), a title {s.MAX_TITLE_CHARS} Chinese
characters ({s.MAX_TITLE_TEXT} as sent, marks and spaces included), prime
{s.MAX_PRIME_CHARS}, acrostic {s.MAX_ACROSTIC_CHARS}, a poem to score, check or rewrite
{s.MAX_POEM_CHARS} characters, {s.MAX_CANDIDATES} rewrite candidates, a body
{s.MAX_BODY_BYTES // 1024} KiB, and a time limit per request (408 past it). Keywords: at
most {s.MAX_KEYWORDS}, of {s.MAX_KEYWORD_CHARS} characters.

Errors: 400 input the model cannot use, 408 too slow, 413 body too large, 415 not JSON,
422 a field missing, mistyped or out of limits, 429 too many requests waiting; each with
`{{"detail": "one sentence"}}`, which begins with the field at fault (`"keywords: …"`)."""


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"detail": message}, status_code=status)


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
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "value_error" and where == "the body":
        return message  # a limit across fields, blamed on one by its own words (schemas.fault)
    return f"{where}: {message}"


@contextmanager
def at_fault(field: str):
    """A ValueError inside → 400 whose sentence begins with ``field``'s name, as a 422's begins
    with its field's; a SettingError blames its own field (``keywords``, or ``max_len`` where
    the poem's length leaves no room), in the API's names."""
    try:
        yield
    except SettingError as err:
        raise HTTPException(400, str(s.setting_fault(err, field))) from None
    except ValueError as err:
        raise HTTPException(400, f"{field}: {err}") from None


def read_request(poet: Poet, req: s.GenerateRequest) -> tuple[list[str], str, str, Constraints]:
    """A generate request's texts read by the one text rule, each known to the model, and its
    constraints, checked before any decoding (so that one request's bad input never fails a
    shared batch): (starts, prime, title, constraints), or a 400 naming the field at fault."""
    form = req.form and parse_form(req.form)
    with at_fault("starts"):
        starts = poet.read_starts(req.starts, form, req.acrostic)
    with at_fault("prime"):
        prime = poet.read_known(req.prime, "prime", "prime")
    with at_fault("title"):
        title = poet.read_title(req.title)
    with at_fault("acrostic"):
        acrostic = poet.read_known(req.acrostic, "acrostic", "acrostic")
    with at_fault("keywords"):
        keywords = [poet.read_known(k, "keyword", "keywords") for k in req.keywords]
    with at_fault("acrostic"):  # its length for the form (keyword errors blame keywords)
        cons = Constraints.from_options(
            form=form,
            acrostic=acrostic,
            rhyme=req.rhyme,
            rhyme_first=req.rhyme_first,
            tones=req.tones,
            no_repeat=req.no_repeat,
            keywords=keywords,
        )
    with at_fault("keywords"):
        poet.check_keywords(starts, cons, req.max_len)
    return starts, prime, title, cons


def poem_out(
    text: str,
    form: str | None,
    logprobs: list[float],
    score: float,
    rhyme: list[str],
    rhymes: list[int],
    script: str,
    truncated: bool = False,
    title: str = "",
) -> s.Poem:
    """A poem (simplified) and its form's name → the API's view of it, in ``script`` (the form's
    name and the title it was written for too; None where there is none). Tones are read from
    the simplified text; a conversion that changes the length keeps the simplified text, so
    that per-character fields stay aligned."""
    script_of = to_traditional if script == "traditional" else str
    shown = script_of(text)
    if len(shown) != len(text):
        shown = text
    return s.Poem(
        title=script_of(title) or None,
        text=shown,
        lines=verses(shown),
        form=form and script_of(form),
        rhyme=[script_of(g) for g in rhyme],
        score=round(score, 4),
        logprobs=[round(lp, 4) for lp in logprobs],
        tones=tone_marks(text),
        rhymes=rhymes,
        truncated=truncated,
    )


def seeded(seed: int | None) -> torch.Generator:
    """A generator seeded with ``seed``, or with 63 fresh random bits when it is None."""
    generator = torch.Generator()
    generator.manual_seed(seed if seed is not None else int.from_bytes(os.urandom(8)) >> 1)
    return generator


def create_app(
    checkpoint: Path | str = SHIPPED_MODEL,
    window: float = 0.015,
    timeout: float = 20.0,
    max_rows: int = 256,
) -> FastAPI:
    """The app, with the model loaded from ``checkpoint`` (raises CheckpointError if it cannot
    be). ``window``: seconds the batcher waits for more requests; ``timeout``: seconds a request
    may take before it is cut off with 408; ``max_rows``: rows that close a batch early."""
    poet = Poet(checkpoint)
    batcher = Batcher(window, max_rows)
    page = PAGE.read_text(encoding="utf-8")

    @asynccontextmanager
    async def lifespan(app):
        yield
        batcher.close()

    app = FastAPI(
        title="poetry_lm", version=__version__, description=DESCRIPTION, lifespan=lifespan
    )
    app.add_middleware(BodyGuard)
    app.state.poet, app.state.batcher, app.state.timeout = poet, batcher, timeout

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        return error(422, validation_message(exc))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception):  # a bug: still no traceback
        return error(500, f"the server failed on this request ({type(exc).__name__})")

    async def run(job: Job):
        """Submit a job and wait for it, within the time limit; errors → HTTP errors."""
        timeout = app.state.timeout
        try:
            future = asyncio.wrap_future(batcher.submit(job))
            return await asyncio.wait_for(future, timeout)
        except Busy:
            raise HTTPException(429, "too many requests are waiting; try again shortly") from None
        except TimeoutError:
            raise HTTPException(
                408, f"the request took longer than {timeout:g} s and was cut off"
            ) from None
        except ValueError as err:
            raise HTTPException(400, str(err)) from None

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index():
        return page

    @app.get("/healthz", response_model=s.Health)
    async def healthz():
        return s.Health(
            status="ok",
            model=poet.checkpoint.name,
            vocabulary=len(poet.table),
            titles=poet.table.sep is not None,
            batches=batcher.batches,
            decode_cpu_s=round(batcher.cpu, 4),
        )

    @app.post("/api/generate", response_model=s.GenerateResponse)
    async def generate(req: s.GenerateRequest):
        """Write poems; the options mirror ``poetry-lm generate``."""
        starts, prime, title, cons = read_request(poet, req)
        try:
            opts = req.sample_options(title, prime)
        except SettingError as err:  # the schema's checks should leave none; to be sure
            raise HTTPException(422, str(s.setting_fault(err))) from None
        rows = [start for start in starts for _ in range(req.n)]
        seeds = poem_seeds(seeded(req.seed), len(rows))

        def decode(batch: list[tuple[list[str], list[int]]]) -> list[list[GeneratedPoem]]:
            """Requests with the same options → one generate call; its poems, per request.
            Each poem draws from its own seed, so it is the same in any batch."""
            poems = poet.generate(
                [r for rs, _ in batch for r in rs],
                opts,
                cons,
                [seed for _, ss in batch for seed in ss],
            )
            split, first = [], 0
            for rs, _ in batch:
                split.append(poems[first : first + len(rs)])
                first += len(rs)
            return split

        width = req.beam or req.best_of
        job = Job((astuple(opts), cons), (rows, seeds), decode, rows=len(rows) * width)
        poems = await run(job)
        return s.GenerateResponse(
            poems=[
                poem_out(
                    p.text,
                    req.form,
                    p.logprobs,
                    p.score,
                    p.rhyme,
                    rhyme_positions(p.lines, req.rhyme_first) if p.rhyme else [],
                    req.script,
                    p.truncated,
                    title,
                )
                for p in poems
            ]
        )

    @app.post("/api/score", response_model=s.ScoreResponse)
    async def score(req: s.ScoreRequest):
        """Per-character surprisal (nats) and perplexity, as ``poetry-lm score --format json``."""
        with at_fault("text"):
            text = poet.read(req.text)
        scored = await run(Job(None, text, lambda texts: [poet.score(texts[0])]))
        r = scored.report
        return s.ScoreResponse(
            text=text,
            perplexity=round(r.perplexity, 3),
            surprisal=round(r.nll, 3),
            tokens=r.tokens,
            unknown=r.unk_tokens,
            per_token=[(tok, round(nats, 3)) for tok, nats in scored.surprisal],
        )

    @app.post("/api/rewrite", response_model=s.RewriteResponse)
    async def rewrite(req: s.RewriteRequest):
        """Candidates for one verse that keep the form, the rhyme and the verses around it,
        ranked by the log-probability of the whole poem."""
        with at_fault("text"):
            text = poet.read_known(req.text, "poem", "text")
        with at_fault("line"):
            poet.verse_parts(text, req.line)
        opts = SampleOptions(temperature=req.temperature, top_k=req.top_k, top_p=req.top_p)

        def new_lines(payloads):
            return [poet.rewrite(text, req.line, req.n, opts, seeded(req.seed))]

        candidates = await run(Job(None, None, new_lines))
        out = []
        for poem, logprobs, mean in candidates:
            lines = verses(poem)
            groups, first = poet.rhyme_of(lines)
            rhymes = rhyme_positions(lines, first) if groups else []
            form = recognise_form(lines)
            out.append(
                poem_out(poem, form and form.name, logprobs, mean, groups, rhymes, req.script)
            )
        return s.RewriteResponse(line=req.line, candidates=out)

    @app.post("/api/check", response_model=s.CheckResponse)
    async def check(req: s.CheckRequest):
        """格律 per character: tone and reading, rhyme groups, the form, and each fault named
        (失粘, 失对, 出韵, 重韵, 孤平, 三平尾, 三仄尾). Needs no model, so it never waits."""
        with at_fault("text"):
            return check_poem(req.text).to_dict()

    @app.post("/api/convert", response_model=s.ConvertResponse)
    async def convert(req: s.ConvertRequest):
        """Text → simplified or traditional script (OpenCC), for the page's display toggle."""
        return s.ConvertResponse(
            text=(to_traditional if req.script == "traditional" else to_simplified)(req.text)
        )

    return app


@contextmanager
def running(app: FastAPI):
    """Serve ``app`` with uvicorn on a free loopback port in a thread, for tests and the README
    screenshot → its base URL. Its lifespan is off: the app (and its decoding thread) outlives
    the server."""
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started and thread.is_alive():
        thread.join(0.05)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(5)
        sock.close()
