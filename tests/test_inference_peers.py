"""``vitkit.open`` / ``vitkit.pipeline`` on a timm checkpoint file: timm's logits, through the default
preprocessing for the model's size (random init, no downloads; peers environment)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import max_diff, randomize_
from PIL import Image
from safetensors.torch import save_file

import vitkit
from vitkit.data.pipeline import Preprocess

timm = pytest.importorskip("timm")
pytestmark = pytest.mark.peers

from timm.models.vision_transformer import VisionTransformer  # noqa: E402


def test_open_and_pipeline_on_a_timm_file_give_timms_answers(tmp_path) -> None:
    reference = randomize_(VisionTransformer(img_size=64, patch_size=16, embed_dim=192, depth=2, num_heads=3,
                                             num_classes=4))
    path = tmp_path / "timm.safetensors"
    save_file({k: v.contiguous() for k, v in reference.state_dict().items()}, path)
    opened = vitkit.open(path, device="cpu")
    assert opened.kind == "image" and opened.class_names == ["0", "1", "2", "3"]
    assert opened.preprocess == Preprocess(64, 73, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))  # 73 = round(64 / 0.875)
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (70, 90, 3), dtype=np.uint8))
    inputs = vitkit.transforms(path)(image)[None]
    assert inputs.shape == (1, 3, 64, 64)
    with torch.no_grad():
        expected = reference(inputs)
        assert max_diff(opened.model(inputs), expected) <= 1e-5
    probabilities = expected.softmax(dim=-1)[0]
    answer = vitkit.pipeline(opened, top_k=4)(image)
    assert [a["label"] for a in answer] == [str(int(i)) for i in probabilities.argsort(descending=True)]
    np.testing.assert_allclose([a["score"] for a in answer], probabilities.sort(descending=True).values.numpy(),
                               rtol=0, atol=1e-6)
