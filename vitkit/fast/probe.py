"""Is bf16 faster than fp32 on this CPU? Measured once per machine, then read from a cache.

CPU flags cannot answer it. Two 2-core machines with AVX-512-BF16 and no AMX gave opposite answers: on an
Intel Xeon (2026-12-03) a 2048² bf16 matmul ran at 190 GFLOP/s against 268 in fp32; on an AMD EPYC
(2026-12-04) at 800+ against ~195. So ``--precision auto`` times a transformer block's forward and backward
in both precisions, the way training runs them, and keeps bf16 only when it wins by :data:`MARGIN`.

The result is cached in ``~/.cache/vitkit/precision-probe.json`` (``VITKIT_CACHE`` moves it), keyed by the
CPU model, its instruction-set flags, the thread count and the torch version, so it is measured again only
when one of those changes. A probe costs about a second.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

# bf16 rounds every product to an 8-bit mantissa: only worth it for a clear gain, not a tie within noise.
MARGIN = 1.10
PROBE_VERSION = 1


@dataclass(frozen=True)
class ProbeResult:
    """Median milliseconds of one probe step in each precision."""

    fp32_ms: float
    bf16_ms: float

    @property
    def speedup(self) -> float:
        """How many times faster bf16 ran than fp32 (below 1: slower)."""
        return self.fp32_ms / self.bf16_ms

    @property
    def bf16_wins(self) -> bool:
        return self.speedup >= MARGIN

    def describe(self) -> str:
        verdict = "faster" if self.speedup >= 1 else "slower"
        ratio = self.speedup if self.speedup >= 1 else 1 / self.speedup
        return f"bf16 measured {ratio:.2f}x {verdict} than fp32 on this CPU"


def cache_file() -> Path:
    root = Path(os.environ.get("VITKIT_CACHE", Path.home() / ".cache" / "vitkit"))
    return root / "precision-probe.json"


def machine_key() -> str:
    """What the answer depends on: the CPU, its instruction sets, the threads torch uses, and torch itself."""
    from .precision import cpu_flags

    parts = [platform.processor() or platform.machine(), _cpu_model(), " ".join(sorted(cpu_flags())),
             str(torch.get_num_threads()), torch.__version__, str(PROBE_VERSION)]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            return next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), "")
    except OSError:
        return ""


def cpu_bf16_probe() -> ProbeResult:
    """This machine's probe result: from the cache when the machine is unchanged, else measured and cached."""
    key = machine_key()
    path = cache_file()
    try:
        cached = json.loads(path.read_text())[key]
        return ProbeResult(cached["fp32_ms"], cached["bf16_ms"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    result = measure_cpu_bf16()
    _store(path, key, result)
    return result


def _store(path: Path, key: str, result: ProbeResult) -> None:
    try:
        entries = json.loads(path.read_text()) if path.exists() else {}
    except (OSError, ValueError):
        entries = {}
    entries[key] = asdict(result)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(f".{os.getpid()}.tmp")
        temporary.write_text(json.dumps(entries, indent=1))
        temporary.replace(path)
    except OSError:  # a read-only home: measure again next time rather than fail
        pass


def measure_cpu_bf16(repeats: int = 5) -> ProbeResult:
    """Median time of a ViT-S-shaped pre-norm block's forward + backward on 4 x 197 tokens, fp32 against
    bf16 autocast (what training uses), the two interleaved so a busy machine slows both alike."""
    generator = torch.Generator().manual_seed(0)
    width, tokens, heads = 384, 197, 6
    weights = [torch.randn(shape, generator=generator) * 0.02 for shape in
               [(3 * width, width), (width, width), (4 * width, width), (width, 4 * width)]]
    for weight in weights:
        weight.requires_grad_(True)
    x = torch.randn(4, tokens, width, generator=generator, requires_grad=True)

    def step(dtype: torch.dtype) -> float:
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
            loss = _block(x, weights, heads).float().square().mean()
        loss.backward()
        return time.perf_counter() - start

    step(torch.float32), step(torch.bfloat16)  # first calls pick kernels and allocate
    fp32, bf16 = [], []
    for _ in range(repeats):
        fp32.append(step(torch.float32))
        bf16.append(step(torch.bfloat16))
    return ProbeResult(statistics.median(fp32) * 1e3, statistics.median(bf16) * 1e3)


def _block(x: torch.Tensor, weights: list[torch.Tensor], heads: int) -> torch.Tensor:
    qkv_w, proj_w, fc1_w, fc2_w = weights
    batch, tokens, width = x.shape
    qkv = F.linear(F.layer_norm(x, (width,)), qkv_w).view(batch, tokens, 3, heads, width // heads)
    q, k, v = qkv.permute(2, 0, 3, 1, 4)
    attended = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(batch, tokens, width)
    x = x + F.linear(attended, proj_w)
    return x + F.linear(F.gelu(F.linear(F.layer_norm(x, (width,)), fc1_w)), fc2_w)
