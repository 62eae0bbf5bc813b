"""The batcher on its own: what arrives within the window runs as one batch, by key."""

import threading
import time

import pytest

from poetry_lm.serve.batcher import Batcher, Busy, Job


def doubling(calls):
    def run(payloads):
        calls.append(list(payloads))
        if "bad" in payloads:
            raise ValueError("bad payload")
        return [2 * p for p in payloads]

    return run


def test_jobs_within_the_window_run_as_one_batch_per_key():
    calls = []
    batcher = Batcher(window=0.2)
    run = doubling(calls)
    futures = [batcher.submit(Job("a", i, run)) for i in range(5)]
    futures += [batcher.submit(Job("b", 10, run)), batcher.submit(Job(None, 20, run))]
    assert [f.result(5) for f in futures] == [0, 2, 4, 6, 8, 20, 40]
    assert calls == [[0, 1, 2, 3, 4], [10], [20]]
    assert batcher.batches == 3
    batcher.close()


def test_jobs_without_a_key_run_alone():
    calls = []
    batcher = Batcher(window=0.2)
    futures = [batcher.submit(Job(None, i, doubling(calls))) for i in range(3)]
    assert [f.result(5) for f in futures] == [0, 2, 4]
    assert calls == [[0], [1], [2]]
    batcher.close()


def test_a_failing_job_fails_alone():
    calls = []
    batcher = Batcher(window=0.2)
    run = doubling(calls)
    good, bad = batcher.submit(Job("a", 1, run)), batcher.submit(Job("a", "bad", run))
    assert good.result(5) == 2
    with pytest.raises(ValueError, match="bad payload"):
        bad.result(5)
    assert calls == [[1, "bad"], [1], ["bad"]]  # the batch, then each job alone
    batcher.close()


def test_batch_rows_ends_the_wait_and_a_cancelled_job_is_skipped():
    calls = []
    gate = threading.Event()

    def slow(payloads):
        gate.wait(5)
        calls.append(payloads)
        return payloads

    batcher = Batcher(window=10, batch_rows=2)  # a window never reached: rows end the wait
    start = time.monotonic()
    first = batcher.submit(Job("a", 1, slow))
    second = batcher.submit(Job("a", 2, slow))
    late = batcher.submit(Job("a", 3, slow))  # waits in the queue while the first batch runs
    assert late.cancel()
    gate.set()
    assert (first.result(5), second.result(5)) == (1, 2)
    assert time.monotonic() - start < 5
    batcher.close()
    assert calls == [[1, 2]]


def test_a_full_queue_refuses_work():
    gate = threading.Event()
    batcher = Batcher(window=0, max_waiting=3)
    blocker = batcher.submit(Job(None, 0, lambda p: [gate.wait(5)]))
    time.sleep(0.1)  # the blocker is running, no longer waiting
    batcher.submit(Job(None, 1, lambda p: p, rows=3))
    with pytest.raises(Busy):
        batcher.submit(Job(None, 2, lambda p: p))
    gate.set()
    assert blocker.result(5) is True
    batcher.close()
