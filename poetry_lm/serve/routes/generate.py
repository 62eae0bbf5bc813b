"""``POST /api/generate``: write poems, with the options of ``poetry-lm generate``: JSON → a
PoemRequest → the Writer, inside the batcher."""

from __future__ import annotations

import dataclasses
import secrets
from functools import partial

from fastapi import APIRouter

from poetry_lm.decoding.loop import GeneratedPoem
from poetry_lm.request import PoemRequest
from poetry_lm.serve import schemas as s
from poetry_lm.serve.batcher import Job
from poetry_lm.serve.deps import PoetDep, RunDep
from poetry_lm.serve.errors import at_fault
from poetry_lm.serve.poet import rhyme_positions
from poetry_lm.serve.routes.common import poem_out
from poetry_lm.writing.writer import Writer, poem_seeds

router = APIRouter()


def decode(
    poet: Writer, request: PoemRequest, batch: list[tuple[list[str], list[int]]]
) -> list[list[GeneratedPoem]]:
    """Requests alike but for their starts and seeds → one batch; its poems, per request. Each
    poem draws from its own seed, so it is the same in any batch."""
    poems = poet.write_rows(
        request, [r for rs, _ in batch for r in rs], [seed for _, ss in batch for seed in ss]
    )
    split, first = [], 0
    for rs, _ in batch:
        split.append(poems[first : first + len(rs)])
        first += len(rs)
    return split


@router.post("/api/generate", response_model=s.GenerateResponse)
async def generate(req: s.GenerateRequest, poet: PoetDep, run: RunDep):
    """Write poems; the options mirror ``poetry-lm generate``. Without a seed one is drawn, and
    returned, so that the same request with it writes the same poems."""
    with at_fault("starts"):  # checked before any decoding: never fails a shared batch
        request = poet.check(req.poem_request())
    seed = request.seed if request.seed is not None else secrets.randbelow(s.MAX_SEED + 1)
    rows = [start for start in request.starts or ("",) for _ in range(request.n)]
    seeds = poem_seeds(seed, len(rows))
    key = dataclasses.replace(request, starts=(), n=1, seed=None)  # what a batch shares
    job = Job(key, (rows, seeds), partial(decode, poet, key), len(rows) * request.width)
    poems = await run(job)
    return s.GenerateResponse(
        seed=seed,
        poems=[
            poem_out(
                p.text,
                request.form,
                p.logprobs,
                p.score,
                p.rhyme,
                rhyme_positions(p.lines, request.rhyme_first, p.rhyme) if p.rhyme else [],
                req.script,
                p.truncated,
                request.title,
            )
            for p in poems
        ],
    )
