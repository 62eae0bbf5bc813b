"""``POST /api/generate``: write poems, with the options of ``poetry-lm generate``."""

from __future__ import annotations

from dataclasses import astuple
from functools import partial

from fastapi import APIRouter, HTTPException

from poetry_lm.decoding.generate import GeneratedPoem, SampleOptions
from poetry_lm.prosody.forms import Constraints, parse_form
from poetry_lm.serve import schemas as s
from poetry_lm.serve.batcher import Job
from poetry_lm.serve.deps import PoetDep, RunDep
from poetry_lm.serve.errors import at_fault
from poetry_lm.serve.poet import Poet, poem_seeds, rhyme_positions
from poetry_lm.serve.routes.common import poem_out, seeded
from poetry_lm.settings import SettingError

router = APIRouter()


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


def decode(
    poet: Poet,
    opts: SampleOptions,
    cons: Constraints,
    batch: list[tuple[list[str], list[int]]],
) -> list[list[GeneratedPoem]]:
    """Requests with the same options → one generate call; its poems, per request. Each poem
    draws from its own seed, so it is the same in any batch."""
    poems = poet.generate(
        [r for rs, _ in batch for r in rs], opts, cons, [seed for _, ss in batch for seed in ss]
    )
    split, first = [], 0
    for rs, _ in batch:
        split.append(poems[first : first + len(rs)])
        first += len(rs)
    return split


@router.post("/api/generate", response_model=s.GenerateResponse)
async def generate(req: s.GenerateRequest, poet: PoetDep, run: RunDep):
    """Write poems; the options mirror ``poetry-lm generate``."""
    starts, prime, title, cons = read_request(poet, req)
    try:
        opts = req.sample_options(title, prime)
    except SettingError as err:  # the schema's checks should leave none; to be sure
        raise HTTPException(422, str(s.setting_fault(err))) from None
    rows = [start for start in starts for _ in range(req.n)]
    seeds = poem_seeds(seeded(req.seed), len(rows))
    width = req.beam or req.best_of
    key = (astuple(opts), cons)
    poems = await run(Job(key, (rows, seeds), partial(decode, poet, opts, cons), len(rows) * width))
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
