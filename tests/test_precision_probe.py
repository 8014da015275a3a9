"""``--precision auto`` follows a measurement of this machine, not its CPU flags (vitkit/fast/probe.py)."""

from __future__ import annotations

import pytest

from vitkit.fast import precision, probe
from vitkit.fast.probe import MARGIN, ProbeResult


@pytest.fixture
def fake_probe(tmp_path, monkeypatch):
    """A CPU with native bf16 whose probe returns what the test sets, counting the measurements."""
    monkeypatch.setenv("VITKIT_CACHE", str(tmp_path))
    monkeypatch.setattr(precision, "bf16_is_native", lambda device: True)
    state = {"result": ProbeResult(10.0, 10.0), "calls": 0}

    def measure() -> ProbeResult:
        state["calls"] += 1
        return state["result"]

    monkeypatch.setattr(probe, "measure_cpu_bf16", measure)
    return state


@pytest.mark.parametrize("bf16_ms, expected", [(4.0, "bf16"), (10.0 / MARGIN * 1.01, "fp32"), (14.0, "fp32")])
def test_auto_follows_the_measured_speed(fake_probe, bf16_ms, expected) -> None:
    fake_probe["result"] = ProbeResult(10.0, bf16_ms)
    assert precision.resolve_precision("auto", "cpu") == expected
    choice, reason = precision.precision_choice("cpu")
    assert choice == expected and "measured" in reason
    assert ("faster" if bf16_ms < 10 else "slower") in reason
    assert precision.resolve_precision("fp32", "cpu") == "fp32" and precision.resolve_precision("bf16", "cpu") == "bf16"


def test_the_probe_runs_once_per_machine(fake_probe, monkeypatch) -> None:
    fake_probe["result"] = ProbeResult(10.0, 4.0)
    for _ in range(3):
        precision.resolve_precision("auto", "cpu")
    assert fake_probe["calls"] == 1, "the cached answer must be reused"
    monkeypatch.setattr(probe.torch, "get_num_threads", lambda: 977)  # another thread count: another machine
    precision.resolve_precision("auto", "cpu")
    assert fake_probe["calls"] == 2


def test_a_corrupt_cache_is_measured_again(fake_probe, tmp_path) -> None:
    (tmp_path / "precision-probe.json").write_text("{not json")
    fake_probe["result"] = ProbeResult(10.0, 4.0)
    assert precision.resolve_precision("auto", "cpu") == "bf16" and fake_probe["calls"] == 1


def test_emulated_bf16_is_never_probed(fake_probe, monkeypatch) -> None:
    monkeypatch.setattr(precision, "bf16_is_native", lambda device: False)
    assert precision.resolve_precision("auto", "cpu") == "fp32" and fake_probe["calls"] == 0


def test_the_real_probe_times_both_precisions() -> None:
    if not precision.bf16_is_native("cpu"):
        pytest.skip("this CPU only emulates bf16: auto never probes it")
    result = probe.measure_cpu_bf16(repeats=1)
    assert result.fp32_ms > 0 and result.bf16_ms > 0
