"""A vitkit image model written with ``vitkit convert --to hf`` opens with ``transformers.pipeline`` as is
(issue 19): its ``preprocessor_config.json`` does vitkit's eval preprocessing (shorter side, center crop,
the folder's mean / std), ``id2label`` carries the class names, and on real photos (cats_vs_dogs val; skipped
when absent) the pipeline's scores equal ``vitkit.pipeline``'s on the same files up to resampling differences,
with the same top-1 label. Peers environment (transformers); no downloads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import vitkit
from conftest import run_cli
from vitkit.models import create_model
from vitkit.store import save_model

transformers = pytest.importorskip("transformers")
pytestmark = pytest.mark.peers

PHOTOS = Path("/work/shared/data/cats_vs_dogs/val")
NAMES = ["cat", "dog", "fox"]
PREPROCESS = {"image_size": 64, "short_side": 72, "mean": [0.2, 0.4, 0.6], "std": [0.3, 0.25, 0.2]}  # crop 0.889
TOLERANCE = 0.1  # the largest probability difference allowed where the inputs differ (measured: below 0.08)


def photos(count: int = 12) -> list[Path]:
    if not PHOTOS.is_dir():
        pytest.skip(f"{PHOTOS} is absent")
    return [path for name in ("cat", "dog") for path in sorted((PHOTOS / name).glob("*.jpg"))[: count // 2]]


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> tuple[Path, Path]:
    """A random vitkit model folder (class names, a non-default preprocess; a scaled-up head so that the
    photos' top-1 margins are clear of resampling noise) and its ``--to hf`` conversion."""
    root = tmp_path_factory.mktemp("hfpipe")
    torch.manual_seed(0)
    model = create_model("vit_ti16", image_size=64, patch_size=16, dim=64, depth=2, heads=4, num_classes=3)
    with torch.no_grad():
        model.head.weight.mul_(20)
    save_model(root / "vitkit", model, class_names=NAMES, preprocess=PREPROCESS)
    result = run_cli("convert", str(root / "vitkit"), "--to", "hf", str(root / "hf"))
    assert result.returncode == 0, result.stderr
    return root / "vitkit", root / "hf"


def test_the_hf_folder_records_the_preprocessing_and_labels(folders) -> None:
    _, hf = folders
    processor = json.loads((hf / "preprocessor_config.json").read_text())
    assert processor["size"] == {"shortest_edge": 72} and processor["crop_size"] == {"height": 64, "width": 64}
    assert (processor["image_mean"], processor["image_std"]) == (PREPROCESS["mean"], PREPROCESS["std"])
    assert transformers.AutoConfig.from_pretrained(hf).id2label == dict(enumerate(NAMES))
    # vitkit reads the folder back with the same preprocessing.
    prep = vitkit.open(hf, device="cpu").preprocess
    assert (prep.image_size, prep.short_side, list(prep.mean), list(prep.std)) == (64, 72, PREPROCESS["mean"],
                                                                                   PREPROCESS["std"])


def scores(ranked: list) -> dict[str, float]:
    return {p["label"]: p["score"] for p in ranked}


def same_size(image) -> bool:
    """Whether vitkit (which rounds) and transformers (which truncates) resize ``image`` to the same size."""
    short, long = sorted(image.size)
    exact = long * PREPROCESS["short_side"] / short
    return round(exact) == int(exact)


def test_transformers_pipeline_agrees_with_vitkit_on_photos(folders) -> None:
    """The same decoded photos (Pillow images) to both: the processor does vitkit's eval (bicubic shorter side,
    center crop, mean / std), so the scores are equal wherever both resize to the same size; transformers
    truncates the longer side where vitkit rounds it, a pixel less for some photos (a crop shifted by at most a
    pixel). The same files to both: vitkit also decodes JPEGs at a reduced DCT scale (data/decode.py)."""
    from PIL import Image

    vitkit_folder, hf = folders
    files = [str(f) for f in photos(20)]
    ours = vitkit.pipeline(str(vitkit_folder), device="cpu", top_k=3)
    theirs = transformers.pipeline("image-classification", model=str(hf), device="cpu", top_k=3)
    images = [Image.open(f).convert("RGB") for f in files]
    exact, other, from_files, margin = 0.0, 0.0, 0.0, 1.0
    for image, mine, them, mine_file, them_file in zip(images, ours(images), theirs(images), ours(files),
                                                        theirs(files), strict=True):
        for a, b in ((mine, them), (mine_file, them_file)):
            assert set(scores(b)) == set(NAMES) and b[0]["label"] == a[0]["label"]  # the same top-1
        diff = max(abs(scores(mine)[n] - scores(them)[n]) for n in NAMES)
        exact, other = (max(exact, diff), other) if same_size(image) else (exact, max(other, diff))
        from_files = max(from_files, *(abs(scores(mine_file)[n] - scores(them_file)[n]) for n in NAMES))
        margin = min(margin, mine[0]["score"] - mine[1]["score"])
    print(f"{len(files)} photos: largest probability difference {exact:.1e} (same images, same resized size), "
          f"{other:.1e} (same images, a pixel apart), {from_files:.1e} (same files); smallest top-1 margin "
          f"{margin:.3f}")
    assert exact < 1e-4 and max(other, from_files) < TOLERANCE
