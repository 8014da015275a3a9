"""int8 on the CPU: ``torch.ao.quantization.quantize_dynamic`` (what ``--int8`` uses) against torchao's
``Int8DynamicActivationInt8WeightConfig``, on ViT-S/16 inference, interleaved in one process.

    pip install --no-deps torchao   # not a vitkit requirement
    PYTHONPATH=. python benchmarks/int8_torchao.py [--batch 8] [--rounds 4]

Prints seconds per batch, the speed ratio against fp32, and the largest logit difference against fp32.
"""

from __future__ import annotations

import argparse
import copy
import time
import warnings

import torch

from vitkit.fast.swap import use_plain_kernels
from vitkit.models import create_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    try:
        from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_
    except ImportError:
        raise SystemExit("torchao is not installed: pip install --no-deps torchao") from None

    torch.manual_seed(0)
    model = use_plain_kernels(create_model("vit_s16")).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ao = torch.ao.quantization.quantize_dynamic(
            copy.deepcopy(model), {torch.nn.Linear: torch.ao.quantization.per_channel_dynamic_qconfig},
            dtype=torch.qint8)
    tao = copy.deepcopy(model)
    quantize_(tao, Int8DynamicActivationInt8WeightConfig())
    candidates = {"fp32": model, "quantize_dynamic": ao, "torchao": tao}
    x = torch.randn(args.batch, 3, 224, 224)
    times: dict[str, list[float]] = {name: [] for name in candidates}
    with torch.inference_mode():
        reference = model(x)
        diffs = {name: float((m(x) - reference).abs().max()) for name, m in candidates.items()}
        for _ in range(args.rounds):
            for name, m in candidates.items():
                start = time.perf_counter()
                m(x)
                times[name].append(time.perf_counter() - start)
    fp32 = sorted(times["fp32"])[len(times["fp32"]) // 2]
    print(f"{'path':<18} {'s/batch':>8} {'vs fp32':>8} {'max |logit diff|':>17}")
    for name, values in times.items():
        median = sorted(values)[len(values) // 2]
        print(f"{name:<18} {median:8.3f} {fp32 / median:7.2f}x {diffs[name]:17.4f}")


if __name__ == "__main__":
    main()
