"""``POST /api/rewrite``: new versions of one verse of a poem."""

from __future__ import annotations

from fastapi import APIRouter

from poetry_lm.decoding.loop import verses
from poetry_lm.decoding.rewrite import recognise_form, rhyme_of
from poetry_lm.serve import schemas as s
from poetry_lm.serve.batcher import Job
from poetry_lm.serve.deps import PoetDep, RunDep
from poetry_lm.serve.errors import at_fault
from poetry_lm.serve.poet import rhyme_positions
from poetry_lm.serve.routes.common import poem_out

router = APIRouter()


@router.post("/api/rewrite", response_model=s.RewriteResponse)
async def rewrite(req: s.RewriteRequest, poet: PoetDep, run: RunDep):
    """Candidates for one verse that keep the form, the rhyme and the verses around it,
    ranked by the log-probability of the whole poem."""
    with at_fault("text"):
        text = poet.read(req.text)
        poet.check_rewrite(text, req.line, req.sampling())

    def new_lines(payloads):
        return [poet.rewrite(text, req.line, req.n, req.sampling(), req.seed)]

    candidates = await run(Job(None, None, new_lines))
    out = []
    for poem, logprobs, mean in candidates:
        lines = verses(poem)
        groups, first = rhyme_of(lines)
        rhymes = rhyme_positions(lines, first) if groups else []
        form = recognise_form(lines)
        out.append(poem_out(poem, form and form.name, logprobs, mean, groups, rhymes, req.script))
    return s.RewriteResponse(line=req.line, candidates=out)
