"""Token merging (vitkit.fast.merge) against analytic facts: merging identical tokens changes nothing, the
sequence shrinks by r per block, r = 0 is the plain model, merged tokens are size-weighted means."""

from __future__ import annotations

import copy

import pytest
import torch

import vitkit
from vitkit.errors import VitkitError
from vitkit.fast import quantize_int8
from vitkit.fast.merge import merge_pairs, use_token_merging

TINY = dict(image_size=32, patch_size=4, dim=64, depth=4, heads=4, num_classes=5)  # 64 patches + [CLS]


def vit(**overrides) -> vitkit.VisionTransformer:
    torch.manual_seed(0)
    return vitkit.VisionTransformer(vitkit.ViTConfig(**(TINY | overrides))).eval()


def block_inputs(model: torch.nn.Module, x: torch.Tensor) -> list[int]:
    """The sequence length each block received in ``model(x)``."""
    lengths = []
    hooks = [b.register_forward_pre_hook(lambda m, args: lengths.append(args[0].shape[1])) for b in model.blocks]
    with torch.no_grad():
        model(x)
    for hook in hooks:
        hook.remove()
    return lengths


def test_zero_merges_is_the_plain_model() -> None:
    plain, x = vit(), torch.randn(3, 3, 32, 32)
    merged = use_token_merging(copy.deepcopy(plain), 0)
    with torch.no_grad():
        torch.testing.assert_close(merged(x), plain(x), rtol=1e-5, atol=1e-5)


def test_each_block_removes_r_tokens() -> None:
    model = use_token_merging(vit(), 6)
    assert block_inputs(model, torch.randn(2, 3, 32, 32)) == [65, 59, 53, 47]
    model = use_token_merging(vit(), [0, 10, 0, 3])
    assert block_inputs(model, torch.randn(2, 3, 32, 32)) == [65, 65, 55, 55]


def test_merging_duplicate_tokens_changes_nothing() -> None:
    """Tokens 1+2i and 2+2i are equal, so the first block merges exactly those pairs; with size-weighted
    (proportional) attention every later block then computes what the unmerged blocks compute."""
    plain = vit()
    merged = use_token_merging(copy.deepcopy(plain), [8, 0, 0, 0])
    torch.manual_seed(1)
    distinct = torch.randn(2, 24, 64)
    tokens = torch.cat([torch.randn(2, 1, 64), distinct.repeat_interleave(2, dim=1)], dim=1)  # [CLS] + 24 pairs
    with torch.no_grad():
        want = plain.blocks(tokens)[:, 0]
        got = merged.blocks(tokens)[:, 0]
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_a_merged_token_is_the_size_weighted_mean() -> None:
    x = torch.tensor([[[9.0], [1.0], [3.0], [5.0], [7.0]]])  # [CLS], then even: 1, 5; odd: 3, 7
    keys = torch.tensor([[[0.0, 1.0], [1.0, 0.0], [1.0, 0.1], [0.0, 1.0], [-1.0, 0.2]]])
    size = torch.tensor([[1.0, 1.0, 3.0, 2.0, 1.0]])
    new, new_size = merge_pairs(x, keys, size, r=1, prefix=1)
    # token 1 (keys [1, 0]) is closest to token 2 (keys [1, 0.1]): (1 * 1 + 3 * 3) / 4 = 2.5 replaces token 2
    torch.testing.assert_close(new, torch.tensor([[[9.0], [5.0], [2.5], [7.0]]]))
    torch.testing.assert_close(new_size, torch.tensor([[1.0, 2.0, 4.0, 1.0]]))


def test_merging_keeps_most_of_the_prediction_and_works_with_int8() -> None:
    model, x = vit(), torch.randn(8, 3, 32, 32)
    with torch.no_grad():
        reference = model(x)
        merged = use_token_merging(copy.deepcopy(model), 4)(x)
        both = quantize_int8(use_token_merging(copy.deepcopy(model), 4))(x)
    for out in (merged, both):
        cosine = torch.nn.functional.cosine_similarity(out, reference, dim=-1).min()
        assert cosine > 0.9, f"merging moved the logits too far (cosine {cosine:.3f})"


@pytest.mark.parametrize("overrides", [dict(pool="mean"), dict(norm="post")])
def test_models_it_cannot_merge_give_a_clear_error(overrides: dict) -> None:
    with pytest.raises(VitkitError, match="token merging needs"):
        use_token_merging(vit(**overrides), 4)


def test_a_schedule_of_the_wrong_length_is_refused() -> None:
    with pytest.raises(VitkitError, match="one non-negative count per block"):
        use_token_merging(vit(), [1, 2])
