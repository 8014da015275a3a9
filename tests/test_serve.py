"""``vitkit serve``'s JSON API: the answers are ``vitkit predict``'s, every error path has its status and one-line
reason, and the server keeps serving after each. The server runs in this process on a real socket."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import re
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import REPO, run_cli, shared_data
from vitkit.models import create_model
from vitkit.store import save_model

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("fastapi_offline")  # /docs's Swagger UI files (extra [serve])

from vitkit.serve import Engine, Limits, Settings, create_app  # noqa: E402
from vitkit.serve.background import serving  # noqa: E402

PREPROCESS = {"image_size": 64, "short_side": 73, "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}


def tiny_image_run(folder: Path) -> Path:
    """A random-init two-class ViT (64 px), its head scaled up so the answers are not near-ties."""
    torch.manual_seed(0)
    model = create_model("vit_ti16", image_size=64, depth=2, num_classes=2)
    with torch.no_grad():
        model.head.weight.mul_(20)
    return save_model(folder, model, class_names=["cat", "dog"], preprocess=PREPROCESS)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def vitkit_serve(source: Path, *options: str) -> Iterator[str]:
    """``vitkit serve SOURCE`` in a subprocess, as a user runs it; yields its URL once /healthz answers."""
    with vitkit_serve_process(source, *options) as (url, _):
        yield url


@contextlib.contextmanager
def vitkit_serve_process(source: Path, *options: str) -> Iterator[tuple[str, subprocess.Popen]]:
    """:func:`vitkit_serve` that also yields the server's process."""
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "vitkit", "serve", str(source), "--port", str(port), *options],
                              env={**os.environ, "PYTHONPATH": str(REPO)}, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            if server.poll() is not None:
                raise AssertionError(f"vitkit serve exited with {server.returncode}: {server.stderr.read()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/healthz", timeout=5).status_code == 200:
                    break
            assert time.monotonic() < deadline, "vitkit serve did not answer within 180 s"
            time.sleep(0.2)
        yield url, server
    finally:
        server.terminate()
        server.wait(timeout=30)


def write_clip(path: Path, frames: int = 12, size: int = 48) -> Path:
    """A small AVI of a bright square moving right (mpeg4), written with PyAV."""
    av = pytest.importorskip("av")
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=8)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        for i in range(frames):
            image = np.full((size, size, 3), 30, np.uint8)
            image[16:32, 2 + 3 * i: 18 + 3 * i] = 230
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    return tiny_image_run(tmp_path_factory.mktemp("serve") / "run")


@pytest.fixture(scope="module")
def engine(run) -> Engine:
    return Engine(str(run))


@pytest.fixture(scope="module")
def url(engine):
    with serving(create_app(engine, Settings(limits=Limits(max_upload_mb=1, max_pixels=4_000_000)))) as base:
        yield base


@pytest.fixture(scope="module")
def photos() -> list[Path]:
    root = shared_data("cats_vs_dogs") / "val"
    return sorted((root / "cat").glob("*.jpg"))[:3] + sorted((root / "dog").glob("*.jpg"))[:3]


def post(url: str, *files: Path | tuple[str, bytes, str], **params) -> httpx.Response:
    parts = [("file", (f.name, f.read_bytes(), "image/jpeg") if isinstance(f, Path) else f) for f in files]
    return httpx.post(f"{url}/v1/predict", files=parts, params=params, timeout=60)


def still_serving(url: str, photo: Path) -> None:
    answer = post(url, photo)
    assert answer.status_code == 200, answer.text
    assert answer.json()["results"][0]["predictions"][0]["class"] in ("cat", "dog")


def test_answers_equal_vitkit_predict(url, run, photos) -> None:
    predicted = run_cli("predict", str(run), *map(str, photos), "--top-k", "2", "--format", "json")
    assert predicted.returncode == 0, predicted.stderr
    expected = {Path(row["file"]).name: row["predictions"] for row in json.loads(predicted.stdout)}
    together = post(url, *photos, top_k=2).json()["results"]  # one request: one batch
    with ThreadPoolExecutor(len(photos)) as pool:  # concurrent requests: batched with each other
        alone = [r.json()["results"][0] for r in pool.map(lambda p: post(url, p, top_k=2), photos)]
    for answers in (together, alone):
        assert [a["file"] for a in answers] == [p.name for p in photos]
        for answer in answers:
            want, got = expected[answer["file"]], answer["predictions"]
            assert [p["class"] for p in got] == [p["class"] for p in want], answer["file"]
            np.testing.assert_allclose([p["probability"] for p in got], [p["probability"] for p in want],
                                       rtol=0, atol=1e-5, err_msg=answer["file"])


def test_raw_body_is_one_file(url, photos) -> None:
    raw = httpx.post(f"{url}/v1/predict", content=photos[0].read_bytes(), timeout=60).json()["results"][0]
    multipart = post(url, photos[0]).json()["results"][0]
    assert raw["predictions"] == multipart["predictions"] and raw["file"] == "body"


def test_bad_images_get_predicts_reason_with_400(url, run, photos) -> None:
    bad = sorted(p for p in shared_data("bad_images").iterdir() if p.suffix == ".jpg")
    predicted = run_cli("predict", str(run), *map(str, bad), photos[0].as_posix())
    reasons = {Path(line.split(": ", 1)[0].strip()).name: line.split(": ", 1)[1]
               for line in predicted.stderr.splitlines() if line.startswith("  ")}
    assert set(reasons) == {p.name for p in bad}, predicted.stderr
    for path in bad:
        answer = post(url, path)
        assert answer.status_code == 400, answer.text
        assert answer.json() == {"error": f"{path.name}: {reasons[path.name]}"}
        still_serving(url, photos[0])


def test_body_over_the_upload_limit_gets_413(url, photos) -> None:
    big = ("big.jpg", photos[0].read_bytes() + bytes(2 * 2**20), "image/jpeg")
    answer = post(url, big)
    assert answer.status_code == 413 and "--max-upload-mb" in answer.json()["error"]
    still_serving(url, photos[0])


def png_header_claiming(width: int, height: int) -> bytes:
    """The start of a PNG claiming ``width`` x ``height`` (IHDR, then the first bytes of its pixels): what a
    decompression bomb looks like before it is decoded."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(bytes(4096))))


@pytest.mark.parametrize("side, shown", [(5_000, "5000x5000 is over"), (30_000, "over")])
def test_too_many_pixels_gets_413_before_decoding(url, photos, side, shown) -> None:
    # 5000 px: over --max-pixels; 30000 px: over Pillow's own guard too (it refuses to open it).
    answer = post(url, ("bomb.png", png_header_claiming(side, side), "image/png"))
    assert answer.status_code == 413, answer.text
    limit = "this server's limit of 4,000,000 (--max-pixels)"
    assert answer.json()["error"] == f"bomb.png: too many pixels: {shown} {limit}"
    still_serving(url, photos[0])


@pytest.mark.parametrize("upload", [("notes.txt", b"just some text\n", "text/plain"),
                                    ("body", bytes(range(256)) * 4, "application/octet-stream"),
                                    ("clip.mp4", b"\x00\x00\x00\x18ftypmp42" + bytes(64), "video/mp4")])
def test_unsupported_types_get_415(url, photos, upload) -> None:
    answer = post(url, upload)
    assert answer.status_code == 415, answer.text
    assert answer.json()["error"].startswith(f"{upload[0]}: ")
    still_serving(url, photos[0])


def test_malformed_requests_get_400_not_500(url, photos) -> None:
    for params, body, headers in [({"top_k": "zero"}, b"x", {}), ({"top_k": 0}, b"x", {}), ({}, b"", {}),
                                  ({}, b"--x\r\nnot multipart", {"content-type": "multipart/form-data; boundary=x"}),
                                  ({}, b"a=1", {"content-type": "multipart/form-data; boundary=zz"})]:
        answer = httpx.post(f"{url}/v1/predict", params=params, content=body, headers=headers, timeout=60)
        assert answer.status_code == 400, (params, body, answer.text)
        assert set(answer.json()) == {"error"} and "\n" not in answer.json()["error"]
    still_serving(url, photos[0])


def test_no_endpoint_reaches_files_by_client_path(url) -> None:
    for path in ["/static/../engine.py", "/static/%2e%2e/engine.py", "/static/..%2f..%2fpyproject.toml",
                 "/static//etc/passwd", "/../pyproject.toml"]:
        answer = httpx.get(url + path, timeout=30)
        assert answer.status_code == 404, path
    assert httpx.get(f"{url}/static/app.js", timeout=30).status_code == 200


def test_model_page_health_and_docs(url, engine) -> None:
    model = httpx.get(f"{url}/v1/model", timeout=30).json()
    assert (model["classes"], model["input_size"], model["task"]) == (["cat", "dog"], [64, 64], "image")
    assert model["preprocess"]["short_side"] == 73
    assert httpx.get(f"{url}/healthz", timeout=30).json()["status"] == "ok"
    page = httpx.get(f"{url}/", timeout=30)
    assert page.status_code == 200 and "default-src 'self'" in page.headers["content-security-policy"]
    assert "http" not in page.text.replace('href="/docs"', "")  # nothing loaded from elsewhere
    schema = httpx.get(f"{url}/openapi.json", timeout=30).json()
    assert {"/v1/predict", "/v1/model", "/healthz"} <= set(schema["paths"])


def test_docs_page_loads_only_this_servers_files(url) -> None:
    """Swagger UI at /docs works offline: every script, style sheet and icon it names is served here (the browser
    test sees it render with other hosts blocked)."""
    docs = httpx.get(f"{url}/docs", timeout=30)
    assert docs.status_code == 200
    linked = re.findall(r"""(?:src|href)=["']([^"']+)""", docs.text)
    assert len(linked) >= 3 and all(link.startswith("/") for link in linked), linked
    for link in linked:
        assert httpx.get(url + link, timeout=30).status_code == 200, link
    assert httpx.get(f"{url}/redoc", timeout=30).status_code == 404


def test_explain_returns_the_rollout_overlay_vitkit_explain_draws(url, engine, photos) -> None:
    from vitkit.explain import explain, load_crop, to_input
    from vitkit.explain.overlay import enlarge, overlay

    answer = post(url, photos[0], explain="true").json()["results"][0]
    crop = load_crop(photos[0], engine.prep)  # the reference: vitkit explain's own path from the file
    heat = explain(engine.model, to_input(crop, engine.prep), "rollout").heat[0, 0].numpy()
    expected = overlay(enlarge(crop), heat)
    for key, want in (("image", enlarge(crop)), ("overlay", expected)):
        assert answer[key].startswith("data:image/png;base64,")
        got = np.asarray(Image.open(io.BytesIO(base64.b64decode(answer[key].split(",", 1)[1]))))
        assert got.shape == (256, 256, 3)  # 64 px enlarged 4x, as vitkit explain draws it
        assert np.abs(got.astype(int) - want.astype(int)).max() <= 1, key
    assert "overlay" not in post(url, photos[0]).json()["results"][0]


def test_token_guards_the_api_but_not_health(engine, photos) -> None:
    with serving(create_app(engine, Settings(token="s3cret"))) as base:
        assert httpx.get(f"{base}/v1/model", timeout=30).status_code == 401
        wrong = httpx.post(f"{base}/v1/predict", content=photos[0].read_bytes(),
                           headers={"Authorization": "Bearer nope"}, timeout=30)
        assert wrong.status_code == 401 and wrong.headers["www-authenticate"] == "Bearer"
        right = httpx.post(f"{base}/v1/predict", content=photos[0].read_bytes(),
                           headers={"Authorization": "Bearer s3cret"}, timeout=60)
        assert right.status_code == 200
        assert httpx.get(f"{base}/healthz", timeout=30).status_code == 200


class Gate:
    """An engine whose model thread waits until the test opens the gate: requests pile up deterministically."""

    def __init__(self, engine: Engine) -> None:
        self.engine, self.open = engine, threading.Event()
        self.name, self.kind, self.class_names = engine.name, engine.kind, engine.class_names

    def __getattr__(self, name):
        return getattr(self.engine, name)

    def process(self, batch):
        self.open.wait(timeout=60)
        return self.engine.process(batch)


def test_full_queue_answers_503_with_retry_after_then_recovers(engine, photos) -> None:
    gate = Gate(engine)
    with serving(create_app(gate, Settings(max_queue=2, max_batch=1))) as base:
        with ThreadPoolExecutor(8) as pool:
            waiting = [pool.submit(post, base, photos[0]) for _ in range(2)]
            while httpx.get(f"{base}/healthz", timeout=30).json()["in_progress"] < 2:
                pass
            refused = post(base, photos[1])
            assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
            assert "--max-queue" in refused.json()["error"]
            gate.open.set()
            assert [w.result().status_code for w in waiting] == [200, 200]
        still_serving(base, photos[1])


def test_slow_request_gets_504_and_is_dropped(engine, photos) -> None:
    gate = Gate(engine)
    with serving(create_app(gate, Settings(limits=Limits(timeout_s=0.5)))) as base:
        late = post(base, photos[0])
        assert late.status_code == 504 and "--timeout" in late.json()["error"]
        gate.open.set()
        still_serving(base, photos[0])


def test_concurrent_requests_share_model_calls(engine, photos) -> None:
    gate = Gate(engine)
    app = create_app(gate, Settings(max_batch=32, max_wait_ms=50))
    with serving(app) as base, ThreadPoolExecutor(12) as pool:
        first = pool.submit(post, base, photos[0])  # holds the model thread at the gate
        while app.state.batcher.batches < 1:
            pass
        rest = [pool.submit(post, base, photos[i % len(photos)]) for i in range(11)]
        while httpx.get(f"{base}/healthz", timeout=30).json()["in_progress"] < 12:
            pass
        gate.open.set()
        assert all(r.result().status_code == 200 for r in [first, *rest])
        assert app.state.batcher.batches == 2  # the first alone, then the eleven that queued meanwhile


def test_core_package_imports_without_fastapi() -> None:
    code = ("import sys; sys.modules['fastapi'] = None; sys.modules['uvicorn'] = None\n"
            "import vitkit, vitkit.cli\n"
            "sys.exit(vitkit.cli.main(['serve', 'anything']))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120,
                            env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 2, result.stderr
    assert "pip install vitkit[serve]" in result.stderr and "Traceback" not in result.stderr


def test_int8_answers_equal_vitkit_predict_int8(run, photos) -> None:
    # One file each: int8 quantises activations per batch, so an answer depends on what shares its batch.
    predicted = run_cli("predict", str(run), str(photos[3]), "--top-k", "2", "--format", "json", "--int8")
    assert predicted.returncode == 0, predicted.stderr
    want = json.loads(predicted.stdout)[0]["predictions"]
    with serving(create_app(Engine(str(run), int8=True))) as base:
        got = post(base, photos[3], top_k=2).json()["results"][0]["predictions"]
    assert [p["class"] for p in got] == [p["class"] for p in want]
    np.testing.assert_allclose([p["probability"] for p in got], [p["probability"] for p in want], rtol=0, atol=1e-5)
