"""``POST /api/check`` (格律, no model needed) and ``POST /api/convert`` (the script)."""

from __future__ import annotations

from fastapi import APIRouter

from poetry_lm.prosody.check import check_poem
from poetry_lm.serve import schemas as s
from poetry_lm.serve.errors import at_fault
from poetry_lm.text.corpus import to_simplified, to_traditional

router = APIRouter()


@router.post("/api/check", response_model=s.CheckResponse)
async def check(req: s.CheckRequest):
    """格律 per character: tone and reading, rhyme groups, the form, and each fault named
    (失粘, 失对, 出韵, 重韵, 孤平, 三平尾, 三仄尾). Needs no model, so it never waits."""
    with at_fault("text"):
        return check_poem(req.text).to_dict()


@router.post("/api/convert", response_model=s.ConvertResponse)
async def convert(req: s.ConvertRequest):
    """Text → simplified or traditional script (OpenCC), for the page's display toggle."""
    return s.ConvertResponse(
        text=(to_traditional if req.script == "traditional" else to_simplified)(req.text)
    )
