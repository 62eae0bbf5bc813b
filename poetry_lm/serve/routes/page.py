"""``GET /``: the page, one self-contained HTML file; ``GET /healthz``: the model and batcher."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from poetry_lm.serve import schemas as s
from poetry_lm.serve.deps import BatcherDep, PoetDep

PAGE = Path(__file__).resolve().parent.parent / "page" / "index.html"

router = APIRouter()


@cache
def page() -> str:
    return PAGE.read_text(encoding="utf-8")


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def index():
    return page()


@router.get("/healthz", response_model=s.Health)
async def healthz(poet: PoetDep, batcher: BatcherDep):
    return s.Health(
        status="ok",
        model=poet.checkpoint.name,
        vocabulary=len(poet.table),
        titles=poet.table.sep is not None,
        batches=batcher.batches,
        decode_cpu_s=round(batcher.cpu, 4),
    )
