"""Hub names (``timm:NAME``, ``hf:ORG/NAME``) -> local files, through ``huggingface_hub`` when it is installed.

timm publishes its weights on the Hugging Face Hub as ``timm/NAME``; transformers models are ``ORG/NAME``.
Files are cached by huggingface_hub, so a name downloaded once also loads offline.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import VitkitError

PREFIXES = {"timm:": "timm/", "hf:": ""}
# timm's default pretrained weights of each architecture (its first pretrained tag, as `timm.create_model(NAME,
# pretrained=True)` picks it); `timm:NAME` without a tag means these, as in timm.
TIMM_DEFAULT_TAGS = {
    "vit_tiny_patch16_224": "augreg_in21k_ft_in1k", "vit_tiny_patch16_384": "augreg_in21k_ft_in1k",
    "vit_small_patch16_224": "augreg_in21k_ft_in1k", "vit_small_patch16_384": "augreg_in21k_ft_in1k",
    "vit_small_patch32_224": "augreg_in21k_ft_in1k", "vit_small_patch32_384": "augreg_in21k_ft_in1k",
    "vit_base_patch16_224": "augreg2_in21k_ft_in1k", "vit_base_patch16_384": "augreg_in21k_ft_in1k",
    "vit_base_patch32_224": "augreg_in21k_ft_in1k", "vit_base_patch32_384": "augreg_in21k_ft_in1k",
    "vit_large_patch16_224": "augreg_in21k_ft_in1k", "vit_large_patch16_384": "augreg_in21k_ft_in1k",
    "vit_large_patch32_224": "orig_in21k", "vit_large_patch32_384": "orig_in21k_ft_in1k",
    "vit_huge_patch14_224": "orig_in21k",
    "deit3_small_patch16_224": "fb_in1k", "deit3_small_patch16_384": "fb_in1k",
    "deit3_base_patch16_224": "fb_in1k", "deit3_base_patch16_384": "fb_in1k",
    "vit_small_patch14_reg4_dinov2": "lvd142m",
    **dict.fromkeys([f"deit_{size}_distilled_patch16_224" for size in ("tiny", "small", "base")], "fb_in1k"),
    "deit_base_distilled_patch16_384": "fb_in1k",
    **dict.fromkeys(["vit_base_patch32_clip_224", "vit_base_patch16_clip_224", "vit_base_patch16_clip_384",
                     "vit_large_patch14_clip_224", "vit_large_patch14_clip_336"], "laion2b_ft_in12k_in1k"),
    "vit_base_patch32_clip_quickgelu_224": "laion400m_e32", "vit_base_patch16_clip_quickgelu_224": "metaclip_2pt5b",
    "vit_large_patch14_clip_quickgelu_224": "dfn2b",
    **dict.fromkeys([f"vit_base_patch16_siglip_{size}" for size in (224, 256, 384)], "v2_webli"),
    **dict.fromkeys([f"eva02_{size}_patch14_224" for size in ("tiny", "small", "base")], "mim_in22k"),
    "eva02_tiny_patch14_336": "mim_in22k_ft_in1k", "eva02_small_patch14_336": "mim_in22k_ft_in1k",
    "eva02_base_patch14_448": "mim_in22k_ft_in22k_in1k",
}
# Tried in order: safetensors first (no pickle), then the PyTorch pickle older repos have.
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def is_hub_name(source: str) -> bool:
    """Whether ``source`` names a Hub model rather than a local path."""
    return source.startswith(tuple(PREFIXES))


def hub_repo(source: str) -> str:
    """The Hub repository of ``timm:NAME[.TAG]`` or ``hf:ORG/NAME``; a timm name without a tag gets timm's default
    tag (``timm:vit_base_patch16_224`` -> ``timm/vit_base_patch16_224.augreg2_in21k_ft_in1k``)."""
    prefix = next(p for p in PREFIXES if source.startswith(p))
    name = source[len(prefix):]
    if prefix == "timm:" and "." not in name:
        if name not in TIMM_DEFAULT_TAGS:
            known = ", ".join(TIMM_DEFAULT_TAGS)
            raise VitkitError(f"{source}: give the weights' tag (timm:{name}.TAG, see https://huggingface.co/timm); "
                              f"vitkit knows the default tag of {known}")
        name = f"{name}.{TIMM_DEFAULT_TAGS[name]}"
    if prefix == "timm:":  # timm's QuickGELU CLIP names load the weights of the plain names
        name = name.replace("_clip_quickgelu_", "_clip_")
    return PREFIXES[prefix] + name


def timm_architecture(source: str) -> str | None:
    """timm's architecture name in ``timm:NAME[.TAG]`` (None for other sources)."""
    return source[len("timm:"):].split(".")[0] if source.startswith("timm:") else None


def download(source: str) -> Path:
    """The local path of the weights of ``timm:NAME`` or ``hf:ORG/NAME`` (``config.json`` and, where the repo
    has one, ``preprocessor_config.json`` land beside them)."""
    repo = hub_repo(source)
    try:
        from huggingface_hub import errors, hf_hub_download
    except ImportError:
        raise VitkitError(
            f"loading {source} needs huggingface_hub (pip install huggingface_hub); or download the weights "
            f"from https://huggingface.co/{repo} and pass the file's path"
        ) from None
    # Older huggingface_hub has only EntryNotFoundError, which offline misses also raise.
    missing = getattr(errors, "RemoteEntryNotFoundError", errors.EntryNotFoundError)
    weights = None
    for filename in WEIGHT_FILES:
        try:
            weights = Path(hf_hub_download(repo, filename))
            break
        except missing:  # the repo exists but lacks this file
            continue
        # Offline, unknown repo, gated repo, proxy error...: the advice is the same for each.
        except Exception as error:  # noqa: BLE001
            raise VitkitError(
                f"could not download {source} ({type(error).__name__}); if offline, download "
                f"https://huggingface.co/{repo}/resolve/main/{WEIGHT_FILES[0]} and pass the file's path"
            ) from None
    if weights is None:
        raise VitkitError(f"https://huggingface.co/{repo} has none of {', '.join(WEIGHT_FILES)}")
    for extra in ("config.json", "preprocessor_config.json"):  # transformers keeps mean/std in the second
        try:
            hf_hub_download(repo, extra)
        except Exception:  # noqa: BLE001 - optional: without them, the config is inferred from the weights alone
            pass
    return weights
