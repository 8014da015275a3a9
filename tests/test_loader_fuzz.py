"""Property-based tests over generated and damaged files: images, videos, model folders and checkpoints
decode, load or are refused with a reason; never a traceback."""

from __future__ import annotations

import io
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from PIL import Image

from reliability_helpers import (CASES, FUZZ, assert_clear, call_cli, count, finished_run, inputs,  # noqa: F401
                                 report_cases)
from vitkit.data.decode import BadImage
from vitkit.data.images import load_for_model
from vitkit.errors import VitkitError
from vitkit.store import load_model
from vitkit.train import checkpoint as ckpt

pytestmark = pytest.mark.usefixtures("report_cases")  # prints the property-test case counts


# Image files a user may have: every Pillow mode a format can hold, odd sizes, animation, damage.
FORMAT_MODES = [("PNG", m) for m in ("1", "L", "P", "RGB", "RGBA", "LA", "I;16")] + \
    [("JPEG", m) for m in ("L", "RGB", "CMYK")] + [("GIF", "P"), ("GIF", "L"), ("BMP", "1"), ("BMP", "RGB")] + \
    [("TIFF", m) for m in ("1", "L", "RGB", "RGBA", "CMYK", "I;16", "I", "F")] + [("WEBP", "RGB"), ("WEBP", "RGBA"),
                                                                             ("PPM", "RGB"), ("PPM", "L")]
SIZES = st.one_of(st.tuples(st.integers(1, 48), st.integers(1, 48)),
                  st.sampled_from([(1, 1), (10000, 50), (50, 10000), (1, 3000), (4000, 3)]))


def _mutate(blob: bytes, how: str, position: float, byte: int) -> bytes:
    at = int(position * len(blob))
    if how == "truncate":
        return blob[:at]
    if how == "flip" and blob:
        at = min(at, len(blob) - 1)
        return blob[:at] + bytes([blob[at] ^ (byte or 1)]) + blob[at + 1:]
    if how == "insert":
        return blob[:at] + bytes([byte]) * 17 + blob[at:]
    if how == "garbage":
        return bytes((byte * 31 + i * 7) % 256 for i in range(64))
    return blob


MUTATIONS = st.tuples(st.sampled_from(["none", "none", "truncate", "flip", "insert", "garbage"]),
                      st.floats(0, 1), st.integers(0, 255))


@st.composite
def image_bytes(draw) -> tuple[bytes, str, str]:
    fmt, mode = draw(st.sampled_from(FORMAT_MODES))
    w, h = draw(SIZES)
    frames = draw(st.integers(1, 3)) if fmt in ("GIF", "PNG", "WEBP", "TIFF") else 1
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    images = [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).convert(mode) for _ in range(frames)]
    buffer = io.BytesIO()
    try:
        images[0].save(buffer, format=fmt, save_all=frames > 1, append_images=images[1:])
    except (OSError, ValueError):  # a combination this Pillow build cannot write: not an input a user can have
        assume(False)
    how, position, byte = draw(MUTATIONS)
    return _mutate(buffer.getvalue(), how, position, byte), f"{fmt}/{mode}/{w}x{h}x{frames}/{how}", fmt.lower()


def check_image_loader(blob: bytes, suffix: str, folder: Path, short_side: int = 24) -> None:
    """The image loader's contract: uint8 [3, h, w] with shorter side ``short_side``, or BadImage."""
    path = folder / f"fuzz.{suffix}"
    path.write_bytes(blob)
    try:
        image = load_for_model(path, short_side)
    except BadImage:
        return
    assert image.dtype == torch.uint8 and image.shape[0] == 3 and min(image.shape[1:]) == short_side, image.shape


@pytest.mark.parametrize("tag_type", [5, 10, 11, 12])  # RATIONAL, SRATIONAL, FLOAT, DOUBLE
def test_a_tiff_whose_strip_offsets_are_not_integers_is_skipped_with_a_reason(tmp_path, tag_type: int) -> None:
    """Regression (found by the 10-minute fuzz run): Pillow raised TypeError for such a file."""
    import struct

    from vitkit.data.decode import BadImage, load_rgb

    buffer = io.BytesIO()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(buffer, format="TIFF")
    data = bytearray(buffer.getvalue())
    directory = struct.unpack_from("<I", data, 4)[0]
    entries = [directory + 2 + 12 * i for i in range(struct.unpack_from("<H", data, directory)[0])]
    strip_offsets = next(e for e in entries if struct.unpack_from("<H", data, e)[0] == 273)
    struct.pack_into("<H", data, strip_offsets + 2, tag_type)
    path = tmp_path / "odd.tif"
    path.write_bytes(bytes(data))
    with pytest.raises(BadImage, match="truncated or corrupt"):
        load_rgb(path)


@given(case=image_bytes())
@FUZZ
def test_any_image_file_decodes_or_is_skipped_with_a_reason(inputs, tmp_path, case) -> None:
    blob, label, suffix = case
    check_image_loader(blob, suffix, tmp_path)
    status, stderr = call_cli(["predict", str(inputs["model"]), str(tmp_path / f"fuzz.{suffix}"), "--format", "json"])
    count("image files")
    assert_clear(status, stderr)  # 2: the one file was unreadable, named with its reason
    assert status == 0 or "warning: skipped 1 unreadable" in stderr, stderr
    assert status == 0 or "warning: skipped 1 unreadable file(s)" in stderr, (label, stderr)


@st.composite
def video_bytes(draw) -> tuple[bytes, str, str]:
    av = pytest.importorskip("av")
    container_format, codec = draw(st.sampled_from([("avi", "mjpeg"), ("mp4", "mpeg4"), ("avi", "mpeg4"),
                                                    ("mkv", "mjpeg")]))
    frames = draw(st.integers(0, 3))
    w, h = draw(st.sampled_from([(16, 16), (32, 18), (2, 2), (64, 8)]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="matroska" if container_format == "mkv" else container_format) as out:
        stream = out.add_stream(codec, rate=8)
        stream.width, stream.height = w, h
        stream.pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
        for _ in range(frames):
            frame = av.VideoFrame.from_ndarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    how, position, byte = draw(MUTATIONS)
    return _mutate(buffer.getvalue(), how, position, byte), f"{container_format}/{codec}/{frames}f/{how}", container_format


def check_video_loader(blob: bytes, suffix: str, folder: Path) -> None:
    """The video loader's contract: uint8 [T >= 1, 3, h, w], or BadVideo; and what the streaming loader decodes
    for a clip (``decode_frames``: first, last and a repeated frame) is exactly those frames of it."""
    from vitkit.data.video import BadVideo, decode_frames, decode_video

    path = folder / f"fuzz.{suffix}"
    path.write_bytes(blob)
    try:
        video = decode_video(path, short_side=8, max_frames=4)
    except BadVideo:
        return
    assert video.dtype == torch.uint8 and video.ndim == 4 and video.shape[1] == 3 and video.shape[0] >= 1
    picks = [len(video) - 1, 0, len(video) - 1]
    assert torch.equal(decode_frames(path, 8, 4, lambda length: picks), video[picks])


def test_every_truncation_of_an_mp4_decodes_or_is_refused(tmp_path) -> None:
    """Regression (found by the fuzz run): cutting an mp4 inside its header left a stream without a codec
    context, and the loader raised AttributeError instead of BadVideo. Try every cut of a small file."""
    av = pytest.importorskip("av")
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as out:
        stream = out.add_stream("mpeg4", rate=8)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        for shade in range(0, 160, 20):
            frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), shade, np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    data = buffer.getvalue()
    for cut in range(1, len(data), 3):
        check_video_loader(data[:cut], "mp4", tmp_path)


@given(case=video_bytes())
@FUZZ
def test_any_video_file_decodes_or_is_refused_with_a_reason(tmp_path, case) -> None:
    blob, _, suffix = case
    check_video_loader(blob, suffix, tmp_path)
    count("video files")


def check_weights_loader(blob: bytes, folder: Path) -> None:
    """Model folders and safetensors files: a model, or VitkitError."""
    (folder / "model.safetensors").write_bytes(blob)
    try:
        load_model(folder)
    except VitkitError:
        return


def check_config_loader(config: dict, folder: Path) -> None:
    (folder / "config.json").write_text(json.dumps(config))
    try:
        load_model(folder)
    except VitkitError:
        return


JSON_VALUES = st.sampled_from([None, 0, -1, 3, 1.5, "x", "", [], {}, [1, 2], True, 10**12])


@given(how=MUTATIONS, key=st.integers(0, 50), value=JSON_VALUES, drop=st.booleans())
@FUZZ
def test_any_damaged_model_folder_loads_or_gives_one_clear_error(inputs, tmp_path, how, key, value, drop) -> None:
    folder = tmp_path / "m"
    shutil.copytree(inputs["model"], folder, dirs_exist_ok=True)
    check_weights_loader(_mutate((inputs["model"] / "model.safetensors").read_bytes(), *how), folder)
    shutil.copy(inputs["model"] / "model.safetensors", folder / "model.safetensors")
    config = json.loads((inputs["model"] / "config.json").read_text())
    fields = [(config, k) for k in config] + [(config["model"], k) for k in config["model"]]
    target, name = fields[key % len(fields)]
    if drop:
        del target[name]
    else:
        target[name] = value
    check_config_loader(config, folder)
    count("model folders")


def check_checkpoint_loader(run: Path, blob: bytes, manifest: bytes | None) -> None:
    """A run's checkpoints: the newest good state, or VitkitError."""
    newest = ckpt.checkpoints(run)[0]
    (newest / "trainer_state.pt").write_bytes(blob)
    if manifest is not None:
        (newest / "manifest.json").write_bytes(manifest)
    try:
        ckpt.load_checkpoint(run, lambda m: None)
    except VitkitError:
        return


@given(how=MUTATIONS, manifest=st.one_of(st.none(), st.binary(max_size=64),
                                         st.sampled_from([b"{}", b'{"files": []}', b'{"files": {"x": 1}}',
                                                          b'{"files": {"trainer_state.pt": null}}', b"[]"])))
@FUZZ
def test_any_damaged_checkpoint_resumes_from_a_good_one_or_gives_one_clear_error(finished_run, tmp_path, how,
                                                                                  manifest) -> None:
    run = tmp_path / "run"
    shutil.rmtree(run, ignore_errors=True)
    shutil.copytree(finished_run[0] / "checkpoints", run / "checkpoints")
    blob = (ckpt.checkpoints(run)[0] / "trainer_state.pt").read_bytes()
    check_checkpoint_loader(run, _mutate(blob, *how), manifest)
    count("checkpoints")


@pytest.mark.skipif("VITKIT_FUZZ_SECONDS" not in os.environ, reason="the long fuzz run; set VITKIT_FUZZ_SECONDS")
def test_fuzz_the_loaders_for_a_while(inputs, finished_run, tmp_path) -> None:
    """``VITKIT_FUZZ_SECONDS=600``: image, video, model-folder and checkpoint loaders on generated and damaged
    files until the time is up; any exception other than the documented ones fails."""
    import time

    deadline = time.monotonic() + float(os.environ["VITKIT_FUZZ_SECONDS"])
    folder = tmp_path / "m"
    shutil.copytree(inputs["model"], folder)
    state = (ckpt.checkpoints(finished_run[0])[0] / "trainer_state.pt").read_bytes()

    findings: dict[str, int] = {}  # undocumented exceptions, by type and the line that raised them

    @given(kind=st.sampled_from(["image", "video", "weights", "checkpoint"]), data=st.data())
    @settings(max_examples=50, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    def one(kind: str, data: st.DataObject) -> None:
        try:
            check(kind, data)
        except Exception as error:  # keep fuzzing: one run should find every distinct bug, not the first
            import traceback

            frame = traceback.extract_tb(error.__traceback__)[-1]
            key = f"{kind}: {type(error).__name__}: {str(error)[:80]} at {Path(frame.filename).name}:{frame.lineno}"
            findings[key] = findings.get(key, 0) + 1
        count(f"fuzz {kind}")

    def check(kind: str, data: st.DataObject) -> None:
        if kind == "image":
            blob, _, suffix = data.draw(image_bytes())
            check_image_loader(blob, suffix, tmp_path)
        elif kind == "video":
            blob, _, suffix = data.draw(video_bytes())
            check_video_loader(blob, suffix, tmp_path)
        elif kind == "weights":
            blob = (inputs["model"] / "model.safetensors").read_bytes()
            check_weights_loader(_mutate(blob, *data.draw(MUTATIONS)), folder)
        else:
            run = tmp_path / "run"
            shutil.rmtree(run, ignore_errors=True)
            shutil.copytree(finished_run[0] / "checkpoints", run / "checkpoints")
            check_checkpoint_loader(run, _mutate(state, *data.draw(MUTATIONS)), None)

    while time.monotonic() < deadline:
        one()
    print(f"\nfuzzed for {os.environ['VITKIT_FUZZ_SECONDS']} s: "
          + ", ".join(f"{k}: {v}" for k, v in sorted(CASES.items()) if k.startswith("fuzz"))
          + "".join(f"\n  FOUND ({n}x) {k}" for k, n in findings.items()))
    assert not findings, findings
