"""A benchmark group (one model size, one mode): time vitkit, its peers and the matmul peak interleaved, then
derive medians, the ratio to the best peer and MFU. Shared by ``vitkit bench`` and ``benchmarks/peers.py``, which
run each candidate in a worker process of its own (``start=worker.starter(...)``, see ``worker.py``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

from .timing import Candidate, InProcess, Runner, Samples, interleave
from .workloads import matmul_peak


@dataclass
class Group:
    """Candidates compared in one interleaved run. ``peers`` names the ones a ratio is taken against;
    ``targets`` maps a vitkit candidate's name to the ratio it must reach against the best peer."""

    model: str
    mode: str
    batch: int
    candidates: list[Candidate]
    peers: list[str] = field(default_factory=list)
    targets: dict[str, float] = field(default_factory=dict)
    peak_dtype: torch.dtype = torch.float32
    device: str = "cpu"


def timed(group: Group) -> list[Candidate]:
    """What :func:`run_group` times: the matmul peak, then the group's candidates."""
    return [matmul_peak(group.peak_dtype, group.device), *group.candidates]


def find(group: Group, name: str) -> Candidate:
    """The candidate called ``name`` among those ``group`` times (what a worker process builds)."""
    for candidate in timed(group):
        if candidate.name == name:
            return candidate
    raise KeyError(f"no candidate {name!r} in the {group.model} {group.mode} group")


def run_group(group: Group, rounds: int, min_seconds: float, log: Callable[[str], None] = print,
              start: Callable[[Candidate], Runner] = InProcess) -> dict:
    """Measure ``group`` (``start`` says where each candidate runs) and return its results as plain data."""
    log(f"{group.model} {group.mode} (batch {group.batch}, {rounds} rounds)")
    candidates = timed(group)
    peak = candidates[0]
    samples = interleave(candidates, rounds, min_seconds, log=log, start=start)
    peak_flops = samples[0].median
    rows = [_row(s, peak_flops) for s in samples[1:]]
    result = {"model": group.model, "mode": group.mode, "batch": group.batch, "device": group.device,
              "peak": {"name": peak.name, **samples[0].summary()}, "results": rows, "comparisons": []}
    best = _best_peer(rows, group.peers)
    for name, target in group.targets.items():
        row = next((r for r in rows if r["name"] == name), None)
        ratio = row["median"] / best["median"] if row and best and row["median"] and best["median"] else None
        result["comparisons"].append({
            "name": name, "best_peer": best["name"] if best else None, "ratio": ratio, "target": target,
            "pass": ratio is not None and ratio >= target,
        })
    return result


def _row(samples: Samples, peak_flops: float) -> dict:
    row = {"name": samples.name, **samples.summary(), "flops_per_step": samples.flops}
    if samples.flops and samples.per_round and peak_flops:
        row["mfu"] = samples.median / samples.items * samples.flops / peak_flops
    return row


def _best_peer(rows: list[dict], peers: list[str]) -> dict | None:
    measured = [r for r in rows if r["name"] in peers and r["median"]]
    return max(measured, key=lambda r: r["median"]) if measured else None
