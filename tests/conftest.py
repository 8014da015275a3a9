"""Shared test helpers: where the real data lives, how to run the CLI as a user would, and the weight
perturbation and difference that the peer-parity tests use."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("VITKIT_SHARED_DATA", REPO.parent / "shared" / "data"))


def randomize_(model: torch.nn.Module) -> torch.nn.Module:
    """Perturb every parameter in place (and set eval mode): zero-initialised heads and biases (torchvision's
    head, for one) would otherwise make any logits agree and hide a mapping error."""
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model.eval()


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    """The largest absolute element-wise difference."""
    return (a - b).abs().max().item()


def block_outputs(model: torch.nn.Module, inputs: torch.Tensor, blocks: torch.nn.Sequential) -> list[torch.Tensor]:
    """The output of each of ``blocks`` in ``model.forward_features(inputs)``, recorded by forward hooks (the
    reference the forward_intermediates tests compare with)."""
    outputs: list[torch.Tensor] = []
    handles = [block.register_forward_hook(lambda module, args, out: outputs.append(out)) for block in blocks]
    try:
        with torch.no_grad():
            model.forward_features(inputs)
    finally:
        for handle in handles:
            handle.remove()
    return outputs


def intermediates_every_way(model: torch.nn.Module, inputs: torch.Tensor, indices) -> dict[str, object]:
    """``model.forward_intermediates`` called the ways the dense tests check (image and video models): ``final``
    and ``maps`` (default), ``tokens`` (NLC), ``normed`` and ``early`` (stop_early), without gradients."""
    run = model.forward_intermediates
    nlc = "NLC"
    with torch.no_grad():
        final, maps = run(inputs, indices=indices)
        return {"final": final, "maps": maps, "features": model.forward_features(inputs),
                "tokens": run(inputs, indices=indices, output_fmt=nlc, intermediates_only=True),
                "normed": run(inputs, indices=indices, norm=True, intermediates_only=True),
                "early": run(inputs, indices=indices, intermediates_only=True, stop_early=True)}


def no_grad_logits(model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    """``model(images)`` without autograd."""
    with torch.no_grad():
        return model(images)


def save_weights(model: torch.nn.Module, path: Path) -> Path:
    """``model``'s state dict as a safetensors file at ``path`` (a reference checkpoint for a parity test)."""
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, path)
    return path


def shared_data(name: str) -> Path:
    """A folder of ``../shared/data``; the test is skipped when it is absent (e.g. outside this workplace)."""
    path = SHARED_DATA / name
    if not path.is_dir():
        pytest.skip(f"real data {path} is not available")
    return path


def run_cli(*args: str, timeout: float = 600, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run ``python -m vitkit ARGS`` in a subprocess, as a user would, and capture its output."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "vitkit", *args], capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd
    )


@pytest.fixture(autouse=True)
def _deterministic() -> None:
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _no_leftover_loader_workers(request):
    """After a test that kills or stalls loader workers on purpose, shut down every DataLoader iterator it left
    behind (held by a traceback until the cyclic GC runs): a dead worker still registered with torch's SIGCHLD
    check makes the next child exit anywhere in this process raise, inside whichever later test is running."""
    yield
    if request.node.module.__name__ not in ("test_stream", "test_shards", "test_video_stream"):
        return
    import gc

    from torch.utils.data.dataloader import _MultiProcessingDataLoaderIter

    gc.collect()
    for thing in gc.get_objects():
        if isinstance(thing, _MultiProcessingDataLoaderIter):
            thing._shutdown_workers()
