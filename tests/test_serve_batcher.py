"""The dynamic batcher of ``vitkit serve``: batches fill up to ``max_batch`` from jobs that are waiting or
announced, a lone job does not wait, cancelled jobs are dropped, a failing batch fails only its own jobs."""

from __future__ import annotations

import threading

import pytest

from vitkit.serve.batcher import Batcher


class Recorder:
    """``process`` that records each batch and can be held at a gate."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()

    def __call__(self, jobs: list[int]) -> list[int]:
        self.entered.set()
        self.gate.wait(timeout=60)
        self.batches.append(list(jobs))
        return [job * 10 for job in jobs]


def test_waiting_jobs_form_batches_of_at_most_max_batch() -> None:
    record = Recorder()
    record.gate.clear()
    batcher = Batcher(record, max_batch=4, max_wait_s=0)
    first = batcher.submit(0)
    assert record.entered.wait(timeout=30)  # the model thread holds job 0 at the gate
    futures = [batcher.submit(i) for i in range(1, 11)]
    record.gate.set()
    assert [f.result(timeout=30) for f in [first, *futures]] == [i * 10 for i in range(11)]
    assert record.batches == [[0], [1, 2, 3, 4], [5, 6, 7, 8], [9, 10]]
    batcher.close()


def test_a_lone_job_does_not_wait_for_max_wait() -> None:
    batcher = Batcher(Recorder(), max_batch=32, max_wait_s=3600)
    assert batcher.submit(7).result(timeout=30) == 70  # an hour's max_wait: only waits for announced jobs
    batcher.close()


def test_announced_jobs_join_the_batch_they_are_awaited_by() -> None:
    record = Recorder()
    batcher = Batcher(record, max_batch=8, max_wait_s=3600)
    with batcher.expecting(), batcher.expecting():
        first = batcher.submit(1)
        second = batcher.submit(2)  # the batch of 1 is still gathering: two jobs were announced
    third = batcher.submit(3)
    assert [f.result(timeout=30) for f in (first, second, third)] == [10, 20, 30]
    assert record.batches[0][:2] == [1, 2]
    batcher.close()


def test_a_job_counts_its_size_against_max_batch() -> None:
    record = Recorder()
    record.gate.clear()
    batcher = Batcher(record, max_batch=4, max_wait_s=0)
    held = batcher.submit(0)
    assert record.entered.wait(timeout=30)
    futures = [batcher.submit(1, size=3), batcher.submit(2, size=3), batcher.submit(3, size=1)]
    record.gate.set()
    for future in [held, *futures]:
        future.result(timeout=30)
    assert record.batches == [[0], [1, 2], [3]]  # 3 + 3 > 4: a job is never split, the batch stops after it
    batcher.close()


def test_cancelled_jobs_are_dropped_and_errors_reach_their_callers() -> None:
    record = Recorder()
    record.gate.clear()

    def process(jobs: list[int]) -> list[int]:
        if 13 in jobs:
            raise ValueError("unlucky")
        return record(jobs)

    batcher = Batcher(process, max_batch=1, max_wait_s=0)
    held = batcher.submit(0)
    assert record.entered.wait(timeout=30)
    dropped, failing, fine = batcher.submit(1), batcher.submit(13), batcher.submit(2)
    assert dropped.cancel()
    record.gate.set()
    assert held.result(timeout=30) == 0 and fine.result(timeout=30) == 20
    with pytest.raises(ValueError, match="unlucky"):
        failing.result(timeout=30)
    assert [1] not in record.batches
    batcher.close()


def test_close_cancels_what_is_still_queued() -> None:
    record = Recorder()
    record.gate.clear()
    batcher = Batcher(record, max_batch=1, max_wait_s=0)
    held = batcher.submit(0)
    assert record.entered.wait(timeout=30)
    queued = batcher.submit(1)
    closing = threading.Thread(target=batcher.close)
    closing.start()
    record.gate.set()
    closing.join(timeout=60)
    assert held.result(timeout=30) == 0 and queued.cancelled()
