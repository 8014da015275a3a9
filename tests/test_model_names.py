"""Model names as users type them: timm's names are aliases of vitkit's, unknown names and unknown options get
"did you mean" with the valid ones listed, and ``pretrained=True`` / ``timm:NAME`` resolve timm's default
pretrained weights (the table is checked against timm itself in test_interop_peers_timm.py); no network here."""

from __future__ import annotations

import sys
import types

import pytest

import vitkit
from vitkit.errors import ConfigError, VitkitError
from vitkit.interop import hub
from vitkit.models.registry import aliases, timm_name


@pytest.mark.parametrize("alias, name, image_size", [
    ("vit_base_patch16_224", "vit_b16", 224), ("vit_small_patch16_224", "vit_s16", 224),
    ("vit_tiny_patch16_224", "vit_ti16", 224), ("vit_large_patch16_224", "vit_l16", 224),
    ("vit_huge_patch14_224", "vit_h14", 224), ("vit_base_patch32_384", "vit_b32", 384),
    ("vit_small_patch16_384", "vit_s16", 384),
])
def test_timm_names_are_aliases(alias: str, name: str, image_size: int) -> None:
    config = vitkit.get_config(alias)
    assert config == vitkit.get_config(name, image_size=image_size)
    model = vitkit.create_model(alias, device="meta", num_classes=3)
    assert model.config.num_classes == 3 and model.config.image_size == (image_size, image_size)


def test_aliases_map_back_to_timm_names() -> None:
    assert timm_name("vit_b16") == "vit_base_patch16_224" and timm_name("vit_base_patch16_384") == "vit_base_patch16_384"
    assert timm_name("seed") is None and timm_name("vit_ti32") is None  # timm has no ViT-Ti/32
    assert set(aliases()) == set(hub.TIMM_DEFAULT_TAGS)


def test_unknown_model_name_suggests_close_names() -> None:
    with pytest.raises(ConfigError, match=r"did you mean .*vit_base_patch16_224"):
        vitkit.create_model("vit_base_patch16_244")
    with pytest.raises(ConfigError, match=r"did you mean .*vit_b16"):
        vitkit.create_model("vit_b61")


def test_unknown_option_suggests_the_close_one_and_lists_the_valid_ones() -> None:
    with pytest.raises(ConfigError, match=r"'dpeth' \(did you mean 'depth'\?\); valid ones: .*drop_path"):
        vitkit.create_model("vit_ti16", device="meta", dpeth=3)
    with pytest.raises(ConfigError, match=r"'frames' \(did you mean 'num_frames'\?\)"):
        vitkit.get_config("vivit_m1_ti", frames=8)


def test_train_model_arg_typo_names_the_valid_keys(tmp_path) -> None:
    from conftest import run_cli

    result = run_cli("train", "--model", "vit_mnist", "--model-arg", "dpeth=2", "--epochs", "1",
                     "--out", str(tmp_path / "run"))
    assert result.returncode == 2, result.stderr
    assert "did you mean 'depth'" in result.stderr and "valid ones" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


@pytest.mark.parametrize("source, repo", [
    ("timm:vit_base_patch16_224", "timm/vit_base_patch16_224.augreg2_in21k_ft_in1k"),
    ("timm:vit_small_patch16_224", "timm/vit_small_patch16_224.augreg_in21k_ft_in1k"),
    ("timm:vit_huge_patch14_224", "timm/vit_huge_patch14_224.orig_in21k"),
    ("timm:eva02_base_patch14_448", "timm/eva02_base_patch14_448.mim_in22k_ft_in22k_in1k"),
    ("timm:vit_base_patch16_224.augreg_in1k", "timm/vit_base_patch16_224.augreg_in1k"),  # a tag is kept
    ("hf:google/vit-base-patch16-224", "google/vit-base-patch16-224"),
])
def test_hub_names_resolve_timms_default_tag(source: str, repo: str) -> None:
    assert hub.hub_repo(source) == repo


def test_a_timm_name_without_a_known_default_asks_for_the_tag() -> None:
    with pytest.raises(VitkitError, match=r"timm:deit_tiny_patch16_224\.TAG"):
        hub.hub_repo("timm:deit_tiny_patch16_224")


@pytest.fixture
def offline_hub(monkeypatch) -> list[str]:
    """A stand-in ``huggingface_hub`` that records what is asked and fails as it does offline."""
    asked: list[str] = []

    class EntryNotFoundError(Exception):
        pass

    def hf_hub_download(repo: str, filename: str) -> str:
        asked.append(f"{repo}/{filename}")
        raise OSError("offline")

    module = types.ModuleType("huggingface_hub")
    module.hf_hub_download = hf_hub_download  # type: ignore[attr-defined]
    module.errors = types.SimpleNamespace(EntryNotFoundError=EntryNotFoundError)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "huggingface_hub", module)
    return asked


@pytest.mark.parametrize("call", [lambda: vitkit.create_model("vit_b16", pretrained=True),
                                  lambda: vitkit.create_model("vit_base_patch16_224", pretrained=True, num_classes=2),
                                  lambda: vitkit.load("timm:vit_base_patch16_224")])
def test_pretrained_asks_the_hub_for_timms_default_and_offline_gives_the_fix(offline_hub, call) -> None:
    with pytest.raises(VitkitError) as error:
        call()
    assert offline_hub == ["timm/vit_base_patch16_224.augreg2_in21k_ft_in1k/model.safetensors"]
    message = str(error.value)
    assert "\n" not in message
    assert ("https://huggingface.co/timm/vit_base_patch16_224.augreg2_in21k_ft_in1k/resolve/main/model.safetensors"
            in message and "pass the file's path" in message)


def test_pretrained_for_a_model_timm_does_not_have_is_a_clear_error() -> None:
    with pytest.raises(VitkitError, match="no pretrained weights for seed"):
        vitkit.create_model("seed", pretrained=True)
