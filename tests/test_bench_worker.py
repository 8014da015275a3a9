"""The benchmark's worker processes (``vitkit/bench/worker.py``): each candidate in a process of its own, failures
reported, every process gone at the end. Fake candidates (a sleep, a small matmul); run as a script, this file
is the worker: ``python tests/test_bench_worker.py NAME`` serves the fake candidate NAME."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from vitkit.bench import worker
from vitkit.bench.timing import Candidate, interleave

PIDS = "VITKIT_TEST_WORKER_PIDS"  # a folder where each fake candidate's setup leaves a file named after its pid


def _setup(step):
    def setup():
        Path(os.environ[PIDS], str(os.getpid())).touch()
        return step, 1.0

    return setup


def _dies_in_its_second_sample():
    calls = 0

    def step() -> None:  # warm-up, then per sample one untimed step and one timed step (min_seconds=0)
        nonlocal calls
        calls += 1
        if calls == 4:
            os.kill(os.getpid(), 9)

    return step


def _kept_after_free():
    """Setup whose FLOPs are the MiB the heap keeps resident after a 64 MiB block is freed: ~64 with vitkit's
    speed heap (no mmap for it, no trimming), ~0 with glibc's defaults (a block that size is mmapped)."""
    from vitkit.bench.memory import status_bytes

    Path(os.environ[PIDS], str(os.getpid())).touch()
    before = status_bytes("VmRSS")
    block = b"\x01" * (64 << 20)
    del block
    return (lambda: None), (status_bytes("VmRSS") - before) / 2**20


def _broken():
    raise RuntimeError("no such library")


def _matmul():
    import torch

    a = torch.randn(64, 64)
    return lambda: a @ a


FAKES = {
    "sleep": lambda: Candidate("sleep", _setup(lambda: time.sleep(0.001)), items=1),
    "matmul": lambda: Candidate("matmul", _setup(_matmul()), items=2 * 64**3),
    "broken": lambda: Candidate("broken", _broken, items=1),
    "speed heap": lambda: Candidate("speed heap", _kept_after_free, items=1, heap="speed"),
    "default heap": lambda: Candidate("default heap", _kept_after_free, items=1),
    "dies": lambda: Candidate("dies", _setup(_dies_in_its_second_sample()), items=1),
}


def _measure(names: list[str], rounds: int = 3, log=lambda line: None):
    start = worker.starter(lambda name: [__file__, name])
    return interleave([FAKES[n]() for n in names], rounds=rounds, min_seconds=0.0, log=log, start=start)


@pytest.fixture
def pids(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv(PIDS, str(tmp_path))
    return tmp_path


def _alive(pids: Path) -> list[int]:
    alive = []
    for path in pids.iterdir():
        try:
            os.kill(int(path.name), 0)
            alive.append(int(path.name))
        except ProcessLookupError:
            pass
    return alive


def test_each_candidate_runs_in_a_process_of_its_own_and_all_are_gone_afterwards(pids: Path) -> None:
    samples = _measure(["sleep", "matmul"])
    workers = {int(p.name) for p in pids.iterdir()}
    assert len(workers) == 2 and os.getpid() not in workers, workers
    assert [len(s.per_round) for s in samples] == [3, 3] and all(s.flops == 1.0 for s in samples)
    assert all(rate > 0 for s in samples for rate in s.per_round)
    assert _alive(pids) == []


def test_the_heap_goal_applies_to_its_own_worker_only(pids: Path) -> None:
    tuned, default = _measure(["speed heap", "default heap"], rounds=1)
    assert tuned.flops > 60 and default.flops < 8, (tuned.flops, default.flops)


def test_peer_groups_time_vitkit_with_its_heap_and_a_default_heap_reference(monkeypatch) -> None:
    import importlib.util

    from vitkit.bench.worker import VITKIT_HEAP

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "peers.py"
    spec = importlib.util.spec_from_file_location("peers", path)
    peers = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "peers", peers)
    spec.loader.exec_module(peers)
    for size, mode in (("ti", "infer-fp32"), ("ti", "train-fp32"), ("v1", "infer-fp32")):
        group = peers.build_group(size, mode, peers.parse_args(["--tiny"]))
        heaps = {c.name: c.heap for c in group.candidates}
        assert VITKIT_HEAP == "speed" and heaps["vitkit"] == VITKIT_HEAP and heaps["vitkit default-heap"] is None
        assert all(heaps[name] is None for name in group.peers if name in heaps), heaps


def test_a_worker_failing_in_setup_is_reported_and_left_out(pids: Path) -> None:
    lines: list[str] = []
    broken, good = _measure(["broken", "sleep"], log=lines.append)
    assert broken.per_round == [] and broken.error == "RuntimeError: no such library"
    assert "  broken: setup failed: RuntimeError: no such library" in lines
    assert len(good.per_round) == 3
    assert _alive(pids) == []


def test_a_worker_killed_mid_run_is_reported_and_the_others_finish(pids: Path) -> None:
    lines: list[str] = []
    dies, good = _measure(["dies", "sleep"], log=lines.append)
    assert len(dies.per_round) == 1 and dies.error == "worker killed by SIGKILL", dies
    assert "  dies: failed in round 2: worker killed by SIGKILL" in lines
    assert len(good.per_round) == 3
    assert _alive(pids) == []


def test_ctrl_c_closes_every_worker(pids: Path) -> None:
    def interrupt(line: str) -> None:
        if line.startswith("  round 1/"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _measure(["sleep", "matmul"], log=interrupt)
    assert len(list(pids.iterdir())) == 2
    assert _alive(pids) == []


if __name__ == "__main__":
    worker.serve(FAKES[sys.argv[1]]())
