"""``vitkit serve``'s page in a real headless Chromium (Debian's ``chromium`` package, driven by Playwright; no
browser is downloaded): the server is the ``vitkit serve`` command, started here on a free port.

Install the browser with ``apt-get install -y chromium`` (see DEVELOPERS.md); without it these tests skip.
With ``VITKIT_SCREENSHOTS=DIR`` the page screenshots are also saved in DIR (the README's come from here).
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Iterator
from urllib.parse import urlsplit

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import shared_data
from test_serve import tiny_image_run, vitkit_serve, write_clip
from vitkit.data.decode import BadImage, load_rgb
from vitkit.models import ViViTConfig, VideoVisionTransformer
from vitkit.store import save_model

CHROMIUM = Path("/usr/bin/chromium")
# Without the background-networking switches Chromium's own connections are refused in a sandboxed machine.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("fastapi_offline")  # /docs's Swagger UI files (extra [serve])
sync_api = pytest.importorskip("playwright.sync_api")
if not CHROMIUM.exists():
    pytest.skip(f"{CHROMIUM} is absent: install it with `apt-get install -y chromium`", allow_module_level=True)


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def image_server(tmp_path_factory) -> Iterator[str]:
    with vitkit_serve(tiny_image_run(tmp_path_factory.mktemp("browser") / "cats")) as url:
        yield url


def screenshot(page, name: str, size: tuple[int, int]) -> np.ndarray:
    """The page as RGB pixels, checked to be the viewport's size and not blank; saved when asked."""
    png = page.screenshot()
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    assert pixels.shape == (size[1], size[0], 3)
    assert pixels.astype(float).var() > 100, "the screenshot is (nearly) blank"
    if os.environ.get("VITKIT_SCREENSHOTS"):
        Path(os.environ["VITKIT_SCREENSHOTS"], name).write_bytes(png)
    return pixels


def offline(page, url: str) -> list[str]:
    """Make ``page`` reach only the server at ``url``, as on a machine without internet: any request to another
    host is aborted and its URL appended to the returned list (which the tests check stays empty)."""
    server, elsewhere = urlsplit(url).netloc, []

    def guard(route) -> None:
        if urlsplit(route.request.url).netloc == server:
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort("internetdisconnected")

    page.route("**/*", guard)
    return elsewhere


def upload(page, url: str, *files: Path) -> None:
    """Open the page (offline: it must need no other host) and pick ``files`` in it."""
    elsewhere = offline(page, url)
    page.goto(url)
    # Locators, not wait_for_function("..."): the page's Content-Security-Policy forbids evaluating strings.
    page.locator("#model", has_text="classes").wait_for()
    page.set_input_files("#pick", [str(f) for f in files])
    assert not elsewhere, f"the page asked other hosts for {elsewhere}"


def test_api_docs_render_offline(browser, image_server) -> None:
    page = browser.new_page(viewport={"width": 1000, "height": 760})
    elsewhere = offline(page, image_server)
    page.goto(f"{image_server}/docs")  # Swagger UI, from vitkit's own files
    page.locator(".opblock-summary-path[data-path='/v1/predict']").wait_for(timeout=60_000)
    assert page.locator(".opblock-summary-path[data-path='/v1/model']").is_visible()
    screenshot(page, "serve-docs.png", (1000, 760))
    assert not elsewhere, f"the API docs asked other hosts for {elsewhere}"
    assert httpx.get(f"{image_server}/redoc").status_code == 404  # ReDoc always fetches its logo from a CDN
    page.close()


def test_photo_shows_its_class_and_the_attention_overlay(browser, image_server) -> None:
    photo = sorted((shared_data("cats_vs_dogs") / "val" / "cat").glob("*.jpg"))[0]
    expected = httpx.post(f"{image_server}/v1/predict", content=photo.read_bytes(), timeout=60).json()
    page = browser.new_page(viewport={"width": 1000, "height": 760})
    upload(page, image_server, photo)
    top = page.wait_for_selector(".card .top-class", timeout=60_000)
    assert top.text_content() == expected["results"][0]["predictions"][0]["class"]
    assert page.text_content(".card .name") == photo.name
    assert page.is_hidden("#token-box")  # no --token: the page asks for none
    picture = page.wait_for_selector(".card img.picture.overlay[src^='data:image/png']")
    assert picture.evaluate("img => [img.naturalWidth, img.naturalHeight]") == [256, 256]
    with_overlay = screenshot(page, "serve-image.png", (1000, 760))
    page.uncheck(".card .toggle input")  # the toggle shows the crop the model saw, without the map
    assert not picture.evaluate("img => img.classList.contains('overlay')")
    page.wait_for_function("img => img.complete", arg=picture)
    without = screenshot(page, "serve-image-plain.png", (1000, 760))
    assert np.abs(with_overlay.astype(int) - without).max() > 50  # the map was drawn, and is gone
    page.close()


def test_truncated_jpeg_shows_the_decoders_reason(browser, image_server) -> None:
    truncated = shared_data("bad_images") / "truncated_half_of_cat.1.jpg"
    with pytest.raises(BadImage) as reason:  # the reason vitkit predict prints when it skips the file
        load_rgb(truncated)
    page = browser.new_page(viewport={"width": 800, "height": 600})
    upload(page, image_server, truncated)
    error = page.wait_for_selector(".card.failed .error", timeout=60_000)
    assert error.text_content() == f"{truncated.name}: {reason.value}"
    screenshot(page, "serve-error.png", (800, 600))
    page.close()


def test_page_fits_a_phone_width_window(browser, image_server) -> None:
    photos = sorted((shared_data("cats_vs_dogs") / "val" / "dog").glob("*.jpg"))[:2]
    page = browser.new_page(viewport={"width": 360, "height": 740}, is_mobile=True, has_touch=True)
    upload(page, image_server, *photos)
    page.locator(".card img.overlay").nth(1).wait_for(timeout=60_000)
    assert page.evaluate("document.documentElement.scrollWidth") <= 360  # nothing wider than the screen
    card = page.query_selector(".card").bounding_box()
    assert card["x"] >= 0 and card["x"] + card["width"] <= 360
    screenshot(page, "serve-phone.png", (360, 740))
    page.close()


@pytest.mark.slow
def test_video_shows_a_strip_of_frames_under_the_rollout(browser, tmp_path) -> None:
    torch.manual_seed(0)
    config = ViViTConfig(variant="factorised_encoder", image_size=32, num_frames=8, tubelet_size=(2, 8, 8), dim=32,
                         depth=1, temporal_depth=1, heads=2, mlp_dim=32, num_classes=3)
    prep = {"task": "video", "image_size": 32, "short_side": 36, "num_frames": 8, "sampling": "uniform", "stride": 2,
            "mean": [0.5] * 3, "std": [0.5] * 3}
    run = save_model(tmp_path / "video", VideoVisionTransformer(config).eval(),
                     class_names=["left", "right", "still"], preprocess=prep)
    clip = write_clip(tmp_path / "square.avi")
    with vitkit_serve(run) as url:
        page = browser.new_page(viewport={"width": 1000, "height": 560})
        upload(page, url, clip)
        top = page.wait_for_selector(".card .top-class", timeout=60_000)
        assert top.text_content() in {"left", "right", "still"}
        strip = page.wait_for_selector(".card.video img.overlay[src^='data:image/png']")
        assert strip.evaluate("img => [img.naturalWidth, img.naturalHeight]") == [8 * 128, 128]  # 32 px x 4
        screenshot(page, "serve-video.png", (1000, 560))
        page.close()


def save_screenshots(out: Path, image_run: Path, photos: list[Path], video_run: Path, clip: Path) -> None:
    """The README's screenshots: the page with ``photos`` classified by ``image_run`` and ``clip`` by
    ``video_run``, saved as small PNGs in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        for run, files, name, size in [(image_run, photos, "serve-image.png", (1000, 700)),
                                       (video_run, [clip], "serve-video.png", (1000, 470))]:
            with vitkit_serve(run) as url:
                page = chromium.new_page(viewport={"width": size[0], "height": size[1]})
                upload(page, url, *files)
                page.locator(".card img.overlay").nth(len(files) - 1).wait_for(timeout=600_000)
                page.screenshot(path=str(out / name))
                page.close()
        chromium.close()


if __name__ == "__main__":  # python tests/test_serve_browser.py OUT IMAGE_RUN VIDEO_RUN CLIP PHOTO...
    import sys

    save_screenshots(Path(sys.argv[1]), Path(sys.argv[2]), [Path(p) for p in sys.argv[5:]], Path(sys.argv[3]),
                     Path(sys.argv[4]))
