"""The fast paths (vitkit.fast) compute what the plain fp32 path computes, within stated tolerances.

References are plain PyTorch (``F.linear``, ``F.gelu``, ``torch.optim.AdamW`` without fusion) and the model
without fast paths (itself checked against timm and the blog). Speed is measured in benchmarks/, not here.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

import vitkit
from vitkit.fast import MasterWeights, checkpoint_blocks, fused_adamw, quantize_int8, to_bf16, use_fused_kernels
from vitkit.fast import fused

TINY = dict(image_size=32, patch_size=8, dim=64, depth=2, heads=4, num_classes=5)


def tiny_model(**overrides) -> vitkit.VisionTransformer:
    return vitkit.VisionTransformer(vitkit.ViTConfig(**(TINY | overrides)))


def images(batch: int = 4) -> torch.Tensor:
    return torch.randn(batch, 3, 32, 32)


@pytest.mark.parametrize("bias", [True, False])
def test_fused_linear_forward_and_gradients_equal_f_linear(bias: bool) -> None:
    x = torch.randn(3, 7, 16, requires_grad=True)
    w = torch.randn(24, 16, requires_grad=True)
    b = torch.randn(24, requires_grad=True) if bias else None
    grad = torch.randn(3, 7, 24)
    out = fused.linear(x, w, b)
    ref = F.linear(x, w, b)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    got = torch.autograd.grad(out, [x, w] + ([b] if bias else []), grad)
    want = torch.autograd.grad(ref, [x, w] + ([b] if bias else []), grad)
    for name, g, r in zip(["input", "weight", "bias"], got, want):
        torch.testing.assert_close(g, r, rtol=1e-5, atol=1e-4, msg=f"gradient of the {name} differs")


@pytest.mark.parametrize("dtype, atol", [(torch.float32, 1e-5), (torch.bfloat16, 3e-2)])
def test_fused_linear_gelu_equals_gelu_of_linear(dtype: torch.dtype, atol: float) -> None:
    x, w, b = torch.randn(5, 9, 32), torch.randn(48, 32) / 6, torch.randn(48)
    reference = F.gelu(F.linear(x, w, b))  # fp32, exact erf GELU
    with torch.no_grad():
        out = fused.linear_gelu(x.to(dtype), w.to(dtype), b.to(dtype)).float()
    torch.testing.assert_close(out, reference, rtol=0, atol=atol)


def test_fused_model_keeps_state_dict_and_logits() -> None:
    plain = tiny_model().eval()
    fast = use_fused_kernels(copy.deepcopy(plain))
    assert list(fast.state_dict()) == list(plain.state_dict())
    x = images()
    with torch.no_grad():
        torch.testing.assert_close(fast(x), plain(x), rtol=0, atol=1e-5)


def test_fused_model_gives_the_same_gradients() -> None:
    plain = tiny_model().train()
    fast = use_fused_kernels(copy.deepcopy(plain))
    x, y = images(), torch.tensor([0, 1, 2, 3])
    F.cross_entropy(plain(x), y).backward()
    F.cross_entropy(fast(x), y).backward()
    for (name, p), q in zip(plain.named_parameters(), fast.parameters()):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-4, atol=1e-6, msg=f"gradient of {name} differs")


def test_bf16_weights_inference_stays_close_to_fp32() -> None:
    plain = tiny_model().eval()
    x = images(16)
    fast = use_fused_kernels(to_bf16(copy.deepcopy(plain)))
    with torch.no_grad():
        ref = plain(x)
        out = fast(x.bfloat16()).float()
    assert all(p.dtype == torch.bfloat16 for p in fast.parameters())
    # bf16 keeps 8 mantissa bits (relative step 2^-8 = 0.4%); through 2 blocks the logits move by a few of those.
    error = (out - ref).abs().max().item() / ref.abs().max().item()
    assert error < 0.03, f"bf16 logits differ from fp32 by {error:.2%} of the largest logit"


def test_fused_adamw_matches_plain_adamw() -> None:
    # The same gradients go to both optimizers, so only the update arithmetic is compared.
    params = [torch.randn(64, 32), torch.randn(32)]
    fast, plain = [p.clone().requires_grad_() for p in params], [p.clone().requires_grad_() for p in params]
    fast_opt = fused_adamw(fast, lr=1e-2, weight_decay=0.05)
    plain_opt = torch.optim.AdamW(plain, lr=1e-2, weight_decay=0.05, foreach=False)
    for step in range(5):
        grads = [torch.randn_like(p) for p in params]
        for group, opt in ((fast, fast_opt), (plain, plain_opt)):
            for p, g in zip(group, grads):
                p.grad = g.clone()
            opt.step()
        for p, q in zip(fast, plain):
            torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-6, msg=f"step {step}")


def test_master_weights_step_is_fp32_adamw_on_the_bf16_gradients() -> None:
    model = to_bf16(tiny_model())
    masters_ref = [p.detach().float().clone().requires_grad_() for p in model.parameters()]
    reference = torch.optim.AdamW(masters_ref, lr=1e-3, foreach=False)
    trainer = MasterWeights(model, lambda params: fused_adamw(params, lr=1e-3))
    for step in range(3):
        x, y = images().bfloat16(), torch.tensor([0, 1, 2, 3])
        F.cross_entropy(model(x).float(), y).backward()
        for p, m in zip(model.parameters(), masters_ref):
            m.grad = p.grad.float()
        reference.step()
        trainer.step()
        trainer.zero_grad()
        for (name, p), m, ref in zip(model.named_parameters(), trainer.masters, masters_ref):
            torch.testing.assert_close(m, ref.detach(), rtol=1e-5, atol=1e-7, msg=f"master of {name}, step {step}")
            assert torch.equal(p, ref.detach().bfloat16()), f"{name} is not its master rounded to bf16"


def test_master_weights_keep_updates_that_bf16_would_round_away() -> None:
    # A weight of 1.0 with steps of 1e-4: bf16's spacing at 1.0 is 2^-7 ~ 0.008, so pure bf16 never moves it.
    model = to_bf16(torch.nn.Linear(1, 1, bias=False))
    torch.nn.init.ones_(model.weight)
    trainer = MasterWeights(model, lambda params: torch.optim.SGD(params, lr=1e-4))
    for _ in range(100):
        model.weight.grad = torch.ones_like(model.weight)
        trainer.step()
    assert trainer.masters[0].item() == pytest.approx(1.0 - 100 * 1e-4, abs=1e-5)
    assert model.weight.item() == pytest.approx(0.99, abs=2**-8), "the bf16 weight should follow its master"
    pure = torch.ones(1, dtype=torch.bfloat16)
    for _ in range(100):
        pure -= 1e-4
    assert pure.item() == 1.0, "premise: pure bf16 loses these updates"


def test_int8_logits_stay_close_and_keep_the_top_class() -> None:
    plain = tiny_model(num_classes=10).eval()
    before = copy.deepcopy(plain.state_dict())
    quantized = quantize_int8(plain)
    x = images(32)
    with torch.no_grad():
        ref, out = plain(x), quantized(x)
    float_linears = [m for m in quantized.modules() if isinstance(m, torch.nn.Linear)]
    int8_linears = [m for m in quantized.modules() if type(m).__name__ == "Linear" and "quantized" in type(m).__module__]
    assert not float_linears and len(int8_linears) == sum(isinstance(m, torch.nn.Linear) for m in plain.modules())
    # 8-bit steps are ~0.4% of each row's range; after 2 blocks the logits must still point the same way.
    cosine = F.cosine_similarity(out, ref, dim=1).min().item()
    assert cosine > 0.99, f"int8 logits have cosine similarity {cosine:.4f} with fp32"
    agree = (out.argmax(1) == ref.argmax(1)).float().mean().item()
    assert agree >= 0.9, f"int8 keeps the top class for only {agree:.0%} of the images"
    for key, value in plain.state_dict().items():
        assert torch.equal(value, before[key]), f"quantize_int8 changed the original model's {key}"


def test_int8_works_on_a_model_with_fused_kernels() -> None:
    plain = tiny_model().eval()
    quantized = quantize_int8(use_fused_kernels(copy.deepcopy(plain)))
    x = images()
    with torch.no_grad():
        cosine = F.cosine_similarity(quantized(x), plain(x), dim=1).min().item()
    assert cosine > 0.99, f"int8 logits have cosine similarity {cosine:.4f} with fp32"


def test_activation_checkpointing_gives_the_same_gradients() -> None:
    plain = tiny_model().train()
    ckpt = checkpoint_blocks(copy.deepcopy(plain))
    assert list(ckpt.state_dict()) == list(plain.state_dict())
    x, y = images(), torch.tensor([0, 1, 2, 3])
    F.cross_entropy(plain(x), y).backward()
    F.cross_entropy(ckpt(x), y).backward()
    for (name, p), q in zip(plain.named_parameters(), ckpt.parameters()):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-5, atol=1e-7, msg=f"gradient of {name} differs")


def test_matmul_attention_gives_the_logits_and_gradients_of_sdpa() -> None:
    from vitkit.fast import use_matmul_attention, use_plain_kernels
    from vitkit.fast.swap import MatmulAttention

    plain = tiny_model().train()
    fast = use_matmul_attention(copy.deepcopy(plain))
    assert sum(type(m) is MatmulAttention for m in fast.modules()) == TINY["depth"]
    assert list(fast.state_dict()) == list(plain.state_dict())
    x, y = images(), torch.tensor([0, 1, 2, 3])
    torch.testing.assert_close(fast(x), plain(x), rtol=0, atol=1e-5)
    F.cross_entropy(plain(x), y).backward()
    F.cross_entropy(fast(x), y).backward()
    for (name, p), q in zip(plain.named_parameters(), fast.parameters()):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-4, atol=1e-6, msg=f"gradient of {name} differs")
    reference = plain.eval()(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # the mode it is for: close to fp32 at bf16 precision
        low = fast.eval()(x).float()
    torch.testing.assert_close(low, reference, rtol=0, atol=0.05)
    use_plain_kernels(fast)
    assert not any(type(m) is MatmulAttention for m in fast.modules())
