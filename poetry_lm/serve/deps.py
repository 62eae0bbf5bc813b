"""What the routes share, as FastAPI dependencies: the model (a :class:`Writer`), and ``run``, which
sends a job to the app's one :class:`Batcher` and waits for it within the time limit. Each is
read from ``app.state``, where :func:`poetry_lm.serve.app.create_app` put it, so a test may
change one there (``app.state.timeout``) and the next request sees it."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request

from poetry_lm.serve.batcher import Batcher, Busy, Job
from poetry_lm.writing.writer import Writer


def get_poet(request: Request) -> Writer:
    return request.app.state.poet


def get_batcher(request: Request) -> Batcher:
    return request.app.state.batcher


def get_timeout(request: Request) -> float:
    return request.app.state.timeout


@dataclass
class Runner:
    batcher: Batcher
    timeout: float

    async def __call__(self, job: Job) -> Any:
        """Submit a job and wait for it, within the time limit: 429 when too many rows are
        waiting, 408 past the limit. Its own errors reach the app's handlers (errors.py)."""
        try:
            future = asyncio.wrap_future(self.batcher.submit(job))
            return await asyncio.wait_for(future, self.timeout)
        except Busy:
            raise HTTPException(429, "too many requests are waiting; try again shortly") from None
        except TimeoutError:
            raise HTTPException(
                408, f"the request took longer than {self.timeout:g} s and was cut off"
            ) from None


def get_runner(
    batcher: Annotated[Batcher, Depends(get_batcher)],
    timeout: Annotated[float, Depends(get_timeout)],
) -> Runner:
    return Runner(batcher, timeout)


PoetDep = Annotated[Writer, Depends(get_poet)]
BatcherDep = Annotated[Batcher, Depends(get_batcher)]
RunDep = Annotated[Runner, Depends(get_runner)]
