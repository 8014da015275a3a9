"""Every model lists its block stacks in one way (``model.block_stacks()``), and the features written against
it reach every model: activation checkpointing recomputes every block of the ViT and of all four ViViT models,
and FSDP shards every block of every stack (ViViT Model 2 has two stacks and no ``blocks``)."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.distributed.fsdp
import torch.nn.functional as F

import vitkit
from vitkit.train import distributed

TINY_VIDEO = dict(image_size=16, num_frames=4, tubelet_size=(2, 8, 8), dim=16, depth=2, temporal_depth=2, heads=2,
                  num_classes=3)
MODELS = {
    "vit": lambda: vitkit.VisionTransformer(vitkit.ViTConfig(image_size=16, patch_size=8, dim=16, depth=2, heads=2,
                                                             num_classes=3)),
    **{variant: (lambda variant=variant: vitkit.VideoVisionTransformer(vitkit.ViViTConfig(
        variant=variant, pool="cls" if variant in ("spatiotemporal", "factorised_encoder") else "mean",
        **TINY_VIDEO))) for variant in ("spatiotemporal", "factorised_encoder", "factorised_self_attention",
                                        "factorised_dot_product")},
}


def _inputs(model: torch.nn.Module) -> torch.Tensor:
    return torch.randn(2, *model.config.input_shape, generator=torch.Generator().manual_seed(0))


def _blocks(model: torch.nn.Module) -> list[torch.nn.Module]:
    """Every encoder block, found by name (independently of ``block_stacks``): children of a ``*blocks`` list."""
    return [module for name, module in model.named_modules() if name.rpartition(".")[0].endswith("blocks")]


def _counted(block: torch.nn.Module, forward, calls: list):
    def counted(*args, **kwargs):
        calls.append(block)
        return forward(*args, **kwargs)

    return counted


@pytest.mark.parametrize("name", list(MODELS))
def test_grad_checkpointing_recomputes_every_block_and_keeps_the_gradients(name: str) -> None:
    torch.manual_seed(0)
    plain = MODELS[name]().train()
    checkpointed = copy.deepcopy(plain)
    checkpointed.grad_checkpointing = True  # what `vitkit train --grad-checkpointing` sets, image or video
    blocks = _blocks(checkpointed)
    calls: list[torch.nn.Module] = []
    for block in blocks:  # counted by wrapping forward: checkpoint's recomputation skips module hooks
        block.forward = _counted(block, block.forward, calls)
    x, y = _inputs(plain), torch.tensor([0, 2])
    F.cross_entropy(plain(x), y).backward()
    loss = F.cross_entropy(checkpointed(x), y)
    calls.clear()
    loss.backward()
    assert len(calls) == len(blocks), f"{len(calls)} of {len(blocks)} blocks were recomputed in the backward pass"
    for (key, p), q in zip(plain.named_parameters(), checkpointed.parameters()):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-5, atol=1e-7, msg=key)


@pytest.mark.parametrize("name", list(MODELS))
def test_fsdp_shards_every_block_of_every_stack(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    sharded: list[torch.nn.Module] = []
    monkeypatch.setattr(torch.distributed.fsdp, "fully_shard", lambda module: sharded.append(module))
    model = MODELS[name]()
    distributed.wrap(model, distributed.Group(rank=0, world=2), torch.device("cpu"), fsdp=True)
    blocks = _blocks(model)
    assert len(blocks) == (4 if name == "factorised_encoder" else 2)
    assert [id(m) for m in sharded] == [id(m) for m in blocks] + [id(model)]
