"""Dynamic batching: requests that arrive within a short window are decoded as one batch.

Decoding reads every weight once per step whatever the batch (its speed is that of memory), so
one batch of 50 poems costs a few times one poem, not 50 times (``docs/performance.md``). One
worker thread owns the model: it takes the first waiting job, takes more while they keep
coming less than ``window`` seconds apart (for ``max_wait`` seconds at most, or until
``batch_rows`` rows are waiting), then runs the jobs with equal keys together,
each distinct key as its own batch, in order of arrival. Jobs whose key is None run alone.

Callers get a :class:`concurrent.futures.Future`; one that is cancelled before its batch
starts (its caller gave up) is skipped.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from poetry_lm.serving import MAX_WAIT


class Busy(Exception):
    """More rows are waiting than the queue accepts."""


@dataclass
class Job:
    key: Hashable | None  # jobs with equal keys run as one batch; None: alone
    payload: Any
    run: Callable[[list[Any]], list[Any]]  # payloads of one batch → one result each, in order
    rows: int = 1  # decoding rows it adds to a batch
    future: Future = field(default_factory=Future)


class Batcher:
    def __init__(
        self,
        window: float = 0.015,
        batch_rows: int = 256,
        max_waiting: int = 4096,
        max_wait: float = MAX_WAIT,
    ):
        """``window``: seconds to wait for another job after the last; ``max_wait``: seconds
        to wait after the first at most; ``batch_rows``: rows that end the wait at once;
        ``max_waiting``: rows the queue holds before :meth:`submit` raises :class:`Busy`."""
        self.window, self.max_wait = window, max_wait
        self.batch_rows, self.max_waiting = batch_rows, max_waiting
        self.queue: queue.Queue[Job | None] = queue.Queue()
        self.waiting = 0  # rows submitted and not yet taken into a batch
        self.lock = threading.Lock()
        self.batches = 0  # batches run, for the tests and the health check
        self.cpu = 0.0  # CPU seconds spent running them (this thread's), for the load script
        self.thread = threading.Thread(target=self._loop, name="decoder", daemon=True)
        self.thread.start()

    def submit(self, job: Job) -> Future:
        with self.lock:
            if self.waiting + job.rows > self.max_waiting:
                raise Busy(f"{self.waiting} rows are already waiting")
            self.waiting += job.rows
        self.queue.put(job)
        return job.future

    def close(self, wait: float | None = None) -> None:
        """Stop after the batch being decoded, waiting for it at most ``wait`` seconds (None:
        until it ends). A shutdown waits none: its requests were cut off already, and the
        decoding thread, a daemon, ends with the process."""
        self.queue.put(None)
        self.thread.join(wait)

    def _collect(self, first: Job) -> list[Job]:
        """The first job and those that follow it with gaps under ``window`` seconds, for at
        most ``max_wait`` seconds in all and up to ``batch_rows`` rows.

        A gap rather than a fixed window: requests that come in a burst (clients answered
        together ask again together) are parsed one by one by the same CPU, so a burst of 50
        can take longer to arrive than any fixed window worth waiting for one request."""
        jobs, rows = [first], first.rows
        start = time.monotonic()
        while rows < self.batch_rows:
            wait = min(self.window, start + self.max_wait - time.monotonic())
            try:
                job = self.queue.get(timeout=max(wait, 0))
            except queue.Empty:
                break
            if job is None:  # close(): finish this batch first
                self.queue.put(None)
                break
            jobs.append(job)
            rows += job.rows
        with self.lock:
            self.waiting -= rows
        return jobs

    def _loop(self) -> None:
        while (first := self.queue.get()) is not None:
            groups: dict[Hashable, list[Job]] = {}
            for n, job in enumerate(self._collect(first)):
                if job.future.set_running_or_notify_cancel():  # False: cancelled while waiting
                    groups.setdefault(job.key if job.key is not None else ("alone", n), []).append(
                        job
                    )
            for jobs in groups.values():
                self._run(jobs)

    def _run(self, jobs: list[Job]) -> None:
        """Run one batch, counting it and its CPU time."""
        self.batches += 1
        start = time.thread_time()
        try:
            self._run_batch(jobs)
        finally:
            self.cpu += time.thread_time() - start

    def _run_batch(self, jobs: list[Job]) -> None:
        """Run the jobs as one batch; if it fails, run them one by one, so that an error
        reaches only the job that caused it."""
        try:
            results = jobs[0].run([job.payload for job in jobs])
        except Exception as err:
            if len(jobs) == 1:
                jobs[0].future.set_exception(err)
                return
            for job in jobs:
                try:
                    job.future.set_result(job.run([job.payload])[0])
                except Exception as one:
                    job.future.set_exception(one)
            return
        for job, result in zip(jobs, results):
            job.future.set_result(result)
