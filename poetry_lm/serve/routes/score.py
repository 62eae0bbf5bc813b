"""``POST /api/score``: per-character surprisal and perplexity of a poem."""

from __future__ import annotations

from fastapi import APIRouter

from poetry_lm.serve import schemas as s
from poetry_lm.serve.batcher import Job
from poetry_lm.serve.deps import PoetDep, RunDep
from poetry_lm.serve.errors import at_fault

router = APIRouter()


@router.post("/api/score", response_model=s.ScoreResponse)
async def score(req: s.ScoreRequest, poet: PoetDep, run: RunDep):
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
