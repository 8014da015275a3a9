"""transformers' DeiT (with its teacher head), DINOv2 (with and without registers), CLIP and SigLIP image models
both ways: random-init models built here in transformers' own terms and saved with ``save_pretrained`` load into
vitkit with equal outputs at two input sizes, and ``vitkit convert --to hf`` (``save_as``) writes folders that
transformers' ``from_pretrained`` loads without missing keys and with equal outputs. Heads transformers has and
vitkit cannot represent are refused in one line naming the key (peers environment, no downloads)."""

from __future__ import annotations

import pytest
import torch
from conftest import max_diff, randomize_

import vitkit
from vitkit.interop.save import save_as

transformers = pytest.importorskip("transformers")
pytestmark = pytest.mark.peers

ENCODER = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, patch_size=8)
TEXT = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
LABELS = dict(num_labels=5)


def _dino(registers: bool, **options) -> object:
    cls = transformers.Dinov2WithRegistersConfig if registers else transformers.Dinov2Config
    return cls(**ENCODER, mlp_ratio=3, layer_norm_eps=1e-6, **options, **({"num_register_tokens": 3} if registers else {}))


def _tower(name: str, size: int, classifier: bool) -> object:
    vision = dict(**ENCODER, intermediate_size=96, image_size=size)
    if not classifier:
        return getattr(transformers, f"{name}VisionConfig")(**vision)
    return getattr(transformers, f"{name}Config")(vision_config=vision, text_config=TEXT, **LABELS)


# case: (transformers class name, config for an image size, the vitkit config fields it must give)
CASES = {
    "deit_teacher": ("DeiTForImageClassificationWithTeacher",
                     lambda size: transformers.DeiTConfig(**ENCODER, intermediate_size=96, image_size=size, **LABELS),
                     dict(distilled=True, pool="cls", norm_eps=1e-12)),
    "deit_model": ("DeiTModel", lambda size: transformers.DeiTConfig(**ENCODER, intermediate_size=96, image_size=size),
                   dict(distilled=True, num_classes=0)),
    "dinov2": ("Dinov2ForImageClassification", lambda size: _dino(False, image_size=size, **LABELS),
               dict(pool="cls_mean", pos_embed="learned", mlp_dim=192, norm_eps=1e-6)),
    "dinov2_model": ("Dinov2Model", lambda size: _dino(False, image_size=size), dict(pool="cls", num_classes=0)),
    "dinov2_registers": ("Dinov2WithRegistersForImageClassification",
                         lambda size: _dino(True, image_size=size, **LABELS),
                         dict(pool="cls_mean", reg_tokens=3, pos_embed="learned_patches")),
    "dinov2_registers_model": ("Dinov2WithRegistersModel", lambda size: _dino(True, image_size=size),
                               dict(pool="cls", reg_tokens=3, num_classes=0)),
    "clip": ("CLIPForImageClassification", lambda size: _tower("CLIP", size, True),
             dict(norm_pre=True, pool="mean", final_norm=False, act="quick_gelu", norm_eps=1e-5)),
    "clip_vision": ("CLIPVisionModel", lambda size: _tower("CLIP", size, False),
                    dict(norm_pre=True, pool="cls", num_classes=0, act="quick_gelu")),
    "siglip": ("SiglipForImageClassification", lambda size: _tower("Siglip", size, True),
               dict(class_token=False, pool="mean", fc_norm=False, act="gelu_tanh")),
    "siglip_vision": ("SiglipVisionModel", lambda size: _tower("Siglip", size, False),
                      dict(class_token=False, pool="map", num_classes=0, act="gelu_tanh")),
}


def build(case: str, size: int) -> torch.nn.Module:
    name, make_config, _ = CASES[case]
    options = {"add_pooling_layer": False} if name == "DeiTModel" else {}
    return randomize_(getattr(transformers, name)(make_config(size), **options))


def reference_output(model: torch.nn.Module, images: torch.Tensor, **options) -> torch.Tensor:
    """Logits, else the pooled features, else (DeiTModel without its tanh pooler) every token."""
    with torch.no_grad():
        out = model(pixel_values=images, **options)
    for name in ("logits", "pooler_output", "last_hidden_state"):
        if getattr(out, name, None) is not None:
            return out[name]
    raise AssertionError("no output")


def vitkit_output(model: vitkit.VisionTransformer, images: torch.Tensor, case: str) -> torch.Tensor:
    with torch.no_grad():
        return model.forward_features(images) if case == "deit_model" else model(images)


@pytest.mark.parametrize("case", list(CASES))
def test_transformers_folders_load_with_equal_outputs_at_two_sizes(case, tmp_path) -> None:
    for size in (32, 48):
        reference = build(case, size)
        reference.save_pretrained(tmp_path / str(size))
        model = vitkit.load(tmp_path / str(size))
        for field, value in CASES[case][2].items():
            assert getattr(model.config, field) == value, (case, field)
        assert model.config.image_size == (size, size) and model.config.extra["source"]["format"] == "hf"
        images = torch.randn(2, 3, size, size)
        diff = max_diff(vitkit_output(model, images, case), reference_output(reference, images))
        assert diff <= 1e-5, f"{case} at {size} px: max |vitkit - transformers| = {diff:.2e}"


@pytest.mark.parametrize("case", list(CASES))
def test_vitkit_writes_folders_transformers_loads_with_equal_outputs(case, tmp_path) -> None:
    build(case, 48).save_pretrained(tmp_path / "reference")
    model = randomize_(vitkit.load(tmp_path / "reference"))  # new weights: nothing is merely passed through
    names = [f"class {i}" for i in range(model.config.num_classes)]
    save_as(model, "hf", tmp_path / "hf", class_names=names or None)
    name = CASES[case][0]
    options = {"add_pooling_layer": False} if name == "DeiTModel" else {}
    reference, info = getattr(transformers, name).from_pretrained(tmp_path / "hf", output_loading_info=True,
                                                                   **options)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    if names:
        assert reference.config.id2label[1] == "class 1"
    images = torch.randn(2, 3, 48, 48)
    diff = max_diff(vitkit_output(model, images, case), reference_output(reference.eval(), images))
    assert diff <= 1e-5, f"{case}: max |vitkit - transformers| = {diff:.2e}"
    assert vitkit.load(tmp_path / "hf").config.replace(extra={}) == model.config.replace(extra={})


@pytest.mark.parametrize("case", ["dinov2_registers", "dinov2_registers_model"])
def test_dinov2_with_registers_at_other_sizes_equals_interpolate_pos_encoding(case, tmp_path) -> None:
    """transformers' DINOv2-with-registers resamples its table as timm and vitkit do (bicubic, antialiased)."""
    reference = build(case, 32)
    reference.save_pretrained(tmp_path)
    model = vitkit.load(tmp_path, dynamic_img_size=True)
    for height, width in ((56, 40), (24, 24)):
        images = torch.randn(2, 3, height, width)
        diff = max_diff(model(images), reference_output(reference, images, interpolate_pos_encoding=True))
        assert diff <= 1e-5, f"{case} at {height}x{width}: {diff:.2e}"


def test_deit_with_a_single_head_is_refused_naming_the_key(tmp_path) -> None:
    config = transformers.DeiTConfig(**ENCODER, intermediate_size=96, image_size=32, **LABELS)
    transformers.DeiTForImageClassification(config).save_pretrained(tmp_path)
    with pytest.raises(vitkit.VitkitError) as error:
        vitkit.load(tmp_path)
    message = str(error.value)
    assert "(key classifier.weight)" in message and "WithTeacher" in message and "\n" not in message


def test_a_whole_clip_model_with_its_text_tower_is_refused_naming_the_key(tmp_path) -> None:
    config = transformers.CLIPConfig(vision_config=dict(**ENCODER, intermediate_size=96, image_size=32),
                                     text_config=TEXT)
    transformers.CLIPModel(config).save_pretrained(tmp_path)
    with pytest.raises(vitkit.VitkitError, match=r"a text tower .*\(key text_model\.") as error:
        vitkit.load(tmp_path)
    assert "\n" not in str(error.value)


def test_dinov2_with_a_swiglu_mlp_is_refused_in_one_line(tmp_path) -> None:
    transformers.Dinov2Model(_dino(False, image_size=32, use_swiglu_ffn=True)).save_pretrained(tmp_path)
    with pytest.raises(vitkit.VitkitError, match="use_swiglu_ffn") as error:
        vitkit.load(tmp_path)
    assert "\n" not in str(error.value)


SMALL = dict(image_size=32, patch_size=8, dim=64, depth=2, heads=4, num_classes=5)


@pytest.mark.parametrize("options, words", [
    (dict(norm_pre=True), "CLIPForImageClassification cannot express a head other than on the mean patch token"),
    (dict(class_token=False, pool="map"), "SiglipForImageClassification cannot express a head other than on the "
                                          "mean of the normed tokens"),
    (dict(init_values=1e-5, pool="cls"), "Dinov2ForImageClassification cannot express pooling 'cls'"),
    (dict(init_values=1e-5, pool="cls_mean", mlp_dim=100), "an MLP of width 100"),
    (dict(init_values=1e-5, pool="cls_mean", reg_tokens=2), "registers with positions of their own"),
    (dict(distilled=True, qk_norm=True), "DeiTForImageClassificationWithTeacher cannot express QK-norm"),
])
def test_heads_transformers_lacks_are_refused_on_writing_in_one_line(options, words, tmp_path) -> None:
    model = vitkit.VisionTransformer(vitkit.ViTConfig(**SMALL | options))
    with pytest.raises(vitkit.VitkitError) as error:
        save_as(model, "hf", tmp_path / "hf")
    assert words in str(error.value) and "\n" not in str(error.value)
    assert not (tmp_path / "hf").exists()


@pytest.mark.parametrize("case", ["deit_teacher", "dinov2", "clip", "siglip_vision"])
def test_other_sizes_equal_transformers_interpolate_pos_encoding(case, tmp_path) -> None:
    """transformers' DeiT, DINOv2, CLIP and SigLIP resample their table plain bicubic: loaded models keep that
    (pos_embed_antialias=False), so vitkit's run-time sizes equal theirs; timm's antialiased kernel would not."""
    reference = build(case, 32)
    reference.save_pretrained(tmp_path)
    model = vitkit.load(tmp_path, dynamic_img_size=True)
    assert model.config.pos_embed_antialias is False
    images = torch.randn(2, 3, 56, 40)
    expected = reference_output(reference, images, interpolate_pos_encoding=True)
    assert max_diff(model(images), expected) <= 1e-5
    timm_kernel = vitkit.load(tmp_path, dynamic_img_size=True, pos_embed_antialias=True)
    assert max_diff(timm_kernel(images), expected) > 1e-4


def test_vitkit_convert_to_hf_on_the_command_line_gives_a_folder_transformers_loads(tmp_path) -> None:
    from conftest import run_cli

    build("dinov2_registers", 32).save_pretrained(tmp_path / "reference")
    result = run_cli("convert", str(tmp_path / "reference"), "--to", "hf", str(tmp_path / "hf"))
    assert result.returncode == 0, result.stderr
    reference = transformers.Dinov2WithRegistersForImageClassification.from_pretrained(tmp_path / "hf").eval()
    model = vitkit.load(tmp_path / "reference")
    images = torch.randn(2, 3, 32, 32)
    assert max_diff(vitkit_output(model, images, "dinov2_registers"), reference_output(reference, images)) <= 1e-5
    assert (tmp_path / "hf" / "preprocessor_config.json").is_file()


@pytest.mark.parametrize("case", ["deit_teacher", "dinov2", "dinov2_registers", "clip", "siglip"])
def test_a_written_folder_works_in_transformers_pipeline_as_vitkit_predicts(case, tmp_path) -> None:
    """``AutoModelForImageClassification`` picks the family's classifier from the folder's config.json, and the
    preprocessor_config.json does vitkit's eval: images whose shorter side is already the model's give the same
    probabilities (no resampling on either side)."""
    import numpy as np
    from PIL import Image

    build(case, 32).save_pretrained(tmp_path / "reference")
    model = vitkit.load(tmp_path / "reference")
    names = [f"class {i}" for i in range(model.config.num_classes)]
    prep = {"image_size": 32, "short_side": 32, "mean": [0.5] * 3, "std": [0.25] * 3, "interpolation": "bilinear"}
    save_as(model, "hf", tmp_path / "hf", class_names=names, preprocess=prep)
    save_as(model, "vitkit", tmp_path / "vitkit", class_names=names, preprocess=prep)
    ours = vitkit.pipeline(str(tmp_path / "vitkit"), device="cpu", top_k=5)
    theirs = transformers.pipeline("image-classification", model=str(tmp_path / "hf"), device="cpu", top_k=5)
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (32, 48, 3), dtype=np.uint8)) for _ in range(3)]
    for mine, them in zip(ours(images), theirs(images), strict=True):
        assert mine[0]["label"] == them[0]["label"]
        theirs_by_name = {row["label"]: row["score"] for row in them}
        assert max(abs(row["score"] - theirs_by_name[row["label"]]) for row in mine) < 1e-5
