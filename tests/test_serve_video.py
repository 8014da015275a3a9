"""``vitkit serve`` with a video model (ViViT): answers equal ``vitkit predict``'s multi-view ones, a clip too short
gets predict's reason, an image gets 415, and explain returns the strip of the central clip's frames."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import run_cli
from test_serve import write_clip
from vitkit.models import ViViTConfig, VideoVisionTransformer
from vitkit.store import save_model

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("fastapi_offline")  # /docs's Swagger UI files (extra [serve])
pytest.importorskip("av")

from vitkit.serve import Engine, Settings, create_app  # noqa: E402
from vitkit.serve.background import serving  # noqa: E402

PREPROCESS = {"task": "video", "image_size": 32, "short_side": 36, "num_frames": 8, "sampling": "uniform",
              "stride": 2, "mean": [0.5] * 3, "std": [0.5] * 3}


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("serve_video")
    torch.manual_seed(0)
    config = ViViTConfig(variant="factorised_encoder", image_size=32, num_frames=8, tubelet_size=(2, 8, 8), dim=32,
                         depth=1, temporal_depth=1, heads=2, mlp_dim=32, num_classes=3)
    model = VideoVisionTransformer(config).eval()
    with torch.no_grad():
        model.head.weight.mul_(20)  # answers far from ties
    save_model(root / "run", model, class_names=["left", "right", "still"], preprocess=PREPROCESS)
    write_clip(root / "a.avi")
    write_clip(root / "b.avi", frames=16, size=64)
    write_clip(root / "short.avi", frames=5)
    return root


@pytest.fixture(scope="module")
def url(files):
    with serving(create_app(Engine(str(files / "run")), Settings())) as base:
        yield base


def post(url: str, path: Path, **params) -> httpx.Response:
    return httpx.post(f"{url}/v1/predict", files=[("file", (path.name, path.read_bytes(), "video/x-msvideo"))],
                      params=params, timeout=120)


def test_answers_equal_vitkit_predict_with_its_views(url, files) -> None:
    clips = [files / "a.avi", files / "b.avi"]
    predicted = run_cli("predict", str(files / "run"), *map(str, clips), "--top-k", "3", "--format", "json")
    assert predicted.returncode == 0, predicted.stderr
    for row, clip in zip(json.loads(predicted.stdout), clips):
        got = post(url, clip, top_k=3).json()["results"][0]["predictions"]
        assert [p["class"] for p in got] == [p["class"] for p in row["predictions"]]
        np.testing.assert_allclose([p["probability"] for p in got], [p["probability"] for p in row["predictions"]],
                                   rtol=0, atol=1e-5)


def test_short_clip_gets_predicts_reason_and_an_image_gets_415(url, files, tmp_path) -> None:
    predicted = run_cli("predict", str(files / "run"), str(files / "short.avi"), str(files / "a.avi"))
    reason = next(line.split(": ", 1)[1] for line in predicted.stderr.splitlines() if "short.avi" in line)
    answer = post(url, files / "short.avi")
    assert answer.status_code == 400 and answer.json()["error"] == f"short.avi: {reason}"
    Image.new("RGB", (40, 30), (200, 10, 10)).save(tmp_path / "red.png")
    image = httpx.post(f"{url}/v1/predict", files={"file": ("red.png", (tmp_path / "red.png").read_bytes())},
                       timeout=60)
    assert image.status_code == 415 and "this model classifies videos" in image.json()["error"]
    assert post(url, files / "a.avi").status_code == 200


def test_explain_draws_every_frame_of_the_central_clip(url, files) -> None:
    answer = post(url, files / "a.avi", explain="true").json()["results"][0]
    strips = {k: np.asarray(Image.open(io.BytesIO(base64.b64decode(answer[k].split(",", 1)[1]))))
              for k in ("image", "overlay")}
    # 8 frames of 32 px, each enlarged 4x to reach 112 px, side by side.
    assert strips["image"].shape == strips["overlay"].shape == (128, 8 * 128, 3)
    assert np.abs(strips["image"].astype(int) - strips["overlay"]).mean() > 5
