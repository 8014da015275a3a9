"""Hub names (``timm:NAME``, ``hf:ORG/NAME``) -> local files, through ``huggingface_hub`` when it is installed.

timm publishes its weights on the Hugging Face Hub as ``timm/NAME``; transformers models are ``ORG/NAME``.
Files are cached by huggingface_hub, so a name downloaded once also loads offline.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import VitkitError

PREFIXES = {"timm:": "timm/", "hf:": ""}
# Tried in order: safetensors first (no pickle), then the PyTorch pickle older repos have.
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def is_hub_name(source: str) -> bool:
    """Whether ``source`` names a Hub model rather than a local path."""
    return source.startswith(tuple(PREFIXES))


def download(source: str) -> Path:
    """The local path of the weights of ``timm:NAME`` or ``hf:ORG/NAME`` (``config.json`` lands beside them)."""
    prefix = next(p for p in PREFIXES if source.startswith(p))
    repo = PREFIXES[prefix] + source[len(prefix):]
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
                f"could not download {source} from https://huggingface.co/{repo} ({type(error).__name__}); "
                "if offline, download model.safetensors (and config.json) yourself and pass the file's path"
            ) from None
    if weights is None:
        raise VitkitError(f"https://huggingface.co/{repo} has none of {', '.join(WEIGHT_FILES)}")
    try:
        hf_hub_download(repo, "config.json")
    except Exception:  # noqa: BLE001 - optional: without it, the config is inferred from the weights alone
        pass
    return weights
