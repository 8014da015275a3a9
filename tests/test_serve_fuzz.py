"""Fuzzing ``vitkit serve`` with random and mutated uploads (hypothesis): never a 500, never a crash, and memory
stays flat (the server's RSS at the end is within 10% of its RSS after a warm-up).

The run lasts ``VITKIT_FUZZ_SECONDS`` (default 20; e.g. ``VITKIT_FUZZ_SECONDS=600`` for ten minutes) and prints
how many cases it sent.
"""

from __future__ import annotations

import io
import os
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import SHARED_DATA
from test_serve import png_header_claiming, tiny_image_run, vitkit_serve_process

httpx = pytest.importorskip("httpx")
hypothesis = pytest.importorskip("hypothesis")
st = hypothesis.strategies

SECONDS = float(os.environ.get("VITKIT_FUZZ_SECONDS", "20"))
OK_STATUSES = {200, 400, 413, 415}


def seed_files() -> list[bytes]:
    """Valid files of every format the decoder reads (from a real photo when the shared data is there), plus the
    bad images and a decompression bomb's header: what the mutations start from."""
    photos = sorted((SHARED_DATA / "cats_vs_dogs" / "val" / "cat").glob("*.jpg"))[:1]
    if photos:
        image = Image.open(photos[0]).convert("RGB")
    else:
        image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (90, 120, 3), dtype=np.uint8))
    small = image.resize((60, 45))
    seeds = [photos[0].read_bytes()] if photos else []
    for fmt, picture in [("JPEG", small), ("PNG", small), ("GIF", small.convert("P")), ("BMP", small),
                         ("WEBP", small), ("TIFF", small), ("PNG", small.convert("RGBA")), ("PNG", small.convert("I;16")),
                         ("JPEG", small.convert("CMYK")), ("PPM", small)]:
        buffer = io.BytesIO()
        picture.save(buffer, format=fmt)
        seeds.append(buffer.getvalue())
    bad = SHARED_DATA / "bad_images"
    seeds += [p.read_bytes() for p in sorted(bad.glob("*.jpg"))] if bad.is_dir() else []
    return seeds + [png_header_claiming(30_000, 30_000), b"\x00\x00\x00\x18ftypmp42" + bytes(100)]


SEEDS = seed_files()


@st.composite
def mutated(draw) -> bytes:
    """A seed file with a few random edits: flipped bytes, a cut, an insertion, or a spliced-in other file."""
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 4))):
        edit = draw(st.sampled_from(["flip", "cut", "insert", "splice", "header"]))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if edit == "flip" and data:
            data[at] ^= draw(st.integers(1, 255))
        elif edit == "cut":
            del data[at:]
        elif edit == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=64))
        elif edit == "splice":
            data[at:] = draw(st.sampled_from(SEEDS))[at:]
        else:
            data[: min(len(data), 32)] = draw(st.binary(min_size=0, max_size=32))
    return bytes(data)


NAMES = st.one_of(st.sampled_from(["cat.jpg", "x.png", "a.gif", "b.webp", "clip.mp4", "notes.txt", "noext", "",
                                   "../../etc/passwd", "/etc/shadow.jpg", "C:\\boot.ini", "x" * 400 + ".jpg"]),
                  st.text(max_size=40))
TYPES = st.sampled_from([None, "image/jpeg", "image/png", "video/mp4", "text/plain", "application/octet-stream",
                         "multipart/form-data", "image/../../x", ""])
REQUESTS = st.fixed_dictionaries({
    "files": st.lists(st.tuples(NAMES, st.one_of(st.sampled_from(SEEDS), mutated(), st.binary(max_size=2048)), TYPES),
                      min_size=0, max_size=3),
    "raw": st.booleans(),
    "top_k": st.one_of(st.none(), st.integers(-3, 3000), st.text(max_size=6)),
    "explain": st.sampled_from([None, "true", "false", "1", "maybe"]),
})


def send(url: str, request: dict) -> httpx.Response:
    params = {k: request[k] for k in ("top_k", "explain") if request[k] is not None}
    if request["raw"] or not request["files"]:
        name, body, kind = request["files"][0] if request["files"] else ("", b"", None)
        headers = {"content-type": kind} if kind else {}
        return httpx.post(f"{url}/v1/predict", params=params, content=body, headers=headers, timeout=60)
    files = [("file", (name, body, kind or "application/octet-stream")) for name, body, kind in request["files"]]
    return httpx.post(f"{url}/v1/predict", params=params, files=files, timeout=60)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the server's RSS from /proc (Linux)")
def test_random_and_mutated_uploads_never_break_the_server(tmp_path) -> None:
    counts: dict[int, int] = {}

    def fuzz(url: str, examples: int) -> None:
        @hypothesis.settings(max_examples=examples, deadline=None, database=None, derandomize=False,
                             suppress_health_check=list(hypothesis.HealthCheck), phases=[hypothesis.Phase.generate])
        @hypothesis.given(REQUESTS)
        def case(request: dict) -> None:
            answer = send(url, request)
            counts[answer.status_code] = counts.get(answer.status_code, 0) + 1
            assert answer.status_code in OK_STATUSES, (answer.status_code, answer.text[:300])
            body = answer.json()
            assert ("results" in body) if answer.status_code == 200 else (set(body) == {"error"})

        case()

    run = tiny_image_run(tmp_path / "run")
    options = ("--max-upload-mb", "1", "--max-pixels", "4000000", "--workers", "2")
    with vitkit_serve_process(run, *options) as (url, server):
        pid = server.pid
        for _ in range(3):  # every seed through every path first: allocator pools and caches reach their size
            for index, seed in enumerate(SEEDS):
                for raw in (True, False):
                    send(url, {"files": [(f"seed{index}.png", seed, None)] * (1 if raw else 3), "raw": raw,
                               "top_k": 3, "explain": "true" if index % 2 else None})
        warm_up_end = time.monotonic() + max(5.0, SECONDS * 0.25)
        while time.monotonic() < warm_up_end:
            fuzz(url, 20)
        warm, warm_cases = rss_mb(pid), sum(counts.values())
        end = time.monotonic() + SECONDS
        while time.monotonic() < end:
            fuzz(url, 20)
        final = rss_mb(pid)
        assert server.poll() is None and httpx.get(f"{url}/healthz", timeout=30).status_code == 200
    cases = sum(counts.values())
    print(f"\nfuzz: {cases - warm_cases} cases in {SECONDS:g} s after {warm_cases} warm-up cases; statuses of all "
          f"{dict(sorted(counts.items()))}; server RSS {warm:.0f} MB after warm-up, {final:.0f} MB at the end")
    assert final <= 1.10 * warm, f"RSS grew from {warm:.0f} MB to {final:.0f} MB"
