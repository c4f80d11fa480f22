"""``rodi serve`` in a real browser: the test starts the server on a free loopback port and drives
headless Chromium (the system's, from the Debian package ``chromium``) with Playwright.

The server runs ``rodi serve -c humanoid``, the shipped model, with no training before it;
``RODI_SERVE_CHECKPOINT`` serves another checkpoint, and
``RODI_SCREENSHOT_DIR`` keeps a screenshot of the page after the transfer there.
"""

import io
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import write_video
from rodi.config import ServeLimits as Limits
from rodi.inference import load
from rodi.serve import Handlers, dataset_examples
from video_samples import cut_mp4

# As root in a container Chromium needs --no-sandbox; the rest keep it from calling out of a closed
# network (each refused connection costs time) and from changing between runs.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
MAX_UPLOAD_MB = 1


def chromium() -> str:
    path = (os.environ.get("RODI_CHROMIUM") or shutil.which("chromium")
            or shutil.which("chromium-browser"))
    if not path:
        pytest.skip("no Chromium on this machine: install the Debian package chromium "
                    "(.ci/run does), or set RODI_CHROMIUM to a Chromium executable")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def checkpoint() -> str:
    return os.environ.get("RODI_SERVE_CHECKPOINT") or "humanoid"


@pytest.fixture(scope="module")
def server(checkpoint, tmp_path_factory):
    """``rodi serve`` on a free port of 127.0.0.1 (its default host): (url, log file)."""
    tmp = tmp_path_factory.mktemp("serve")
    port = free_port()
    log = tmp / "serve.log"
    env = {**os.environ, "GRADIO_TEMP_DIR": str(tmp / "gradio")}
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "rodi.cli", "serve", "-c", str(checkpoint),
                                 "--port", str(port),
                                 "--examples", "2", "--max-upload-mb", str(MAX_UPLOAD_MB),
                                 "--max-video-frames", "20"],
                                stdout=out, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.time() + 180
        while True:
            if proc.poll() is not None:
                pytest.fail(f"rodi serve exited with {proc.returncode}:\n{log.read_text()}")
            try:
                urllib.request.urlopen(url, timeout=5)
                break
            except OSError:
                if time.time() > deadline:
                    pytest.fail(f"rodi serve did not answer at {url} within 180 s:\n"
                                f"{log.read_text()}")
                time.sleep(0.5)
        yield url, log
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def browser():
    executable = chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser, server):
    page = browser.new_page(viewport={"width": 1200, "height": 1000})
    page.set_default_timeout(60_000)
    page.goto(server[0])
    page.wait_for_selector("#transfer")
    yield page
    page.close()


@pytest.fixture(scope="module")
def model(checkpoint):
    return load(checkpoint, "cpu")


@pytest.fixture(scope="module")
def pair(model, tmp_path_factory) -> list[str]:
    """An appearance and a pose image from the checkpoint's own data, as files to upload."""
    pairs = dataset_examples(model, tmp_path_factory.mktemp("uploads"), n=1)
    assert pairs, "the checkpoint's data is needed for the upload images"
    return pairs[0]


def server_url(page) -> str:
    return page.url.split("?")[0].rstrip("/") + "/"


def model_transfer(model, pair) -> np.ndarray:
    """What the model renders for the (appearance, pose) files, as (S, S, 3) uint8."""
    from rodi.viz import to_uint8

    return to_uint8(model.network.transfer(model.prepare([pair[0]]), model.prepare([pair[1]])))[0]


def toast(page, text: str) -> str:
    """The text of the message box in the page that says ``text`` (waiting for it)."""
    box = page.locator(".toast-body", has_text=text).first
    box.wait_for()
    return box.inner_text()


def natural_size(page, selector: str) -> tuple[int, int]:
    page.wait_for_function(f"document.querySelector('{selector}') && "
                           f"document.querySelector('{selector}').naturalWidth > 0")
    return tuple(page.eval_on_selector(selector, "e => [e.naturalWidth, e.naturalHeight]"))


def test_the_server_listens_on_loopback_only_by_default(server):
    url, log = server
    assert f"Running on local URL:  {url[:-1]}" in log.read_text()


def test_transfer_in_the_browser_shows_a_render_of_the_models_size(page, pair, model):
    page.locator("#appearance input[type=file]").set_input_files(pair[0])
    page.locator("#pose input[type=file]").set_input_files(pair[1])
    page.wait_for_selector("#appearance img")
    page.wait_for_selector("#pose img")
    page.click("#transfer")
    assert natural_size(page, "#result img") == (model.size, model.size)
    assert natural_size(page, "#mix-result img") == (model.size, model.size)  # the sliders' render
    # the page shows the model's own transfer of the two uploads
    src = page.get_attribute("#result img", "src")
    with urllib.request.urlopen(src if src.startswith("http")
                                else server_url(page) + src.lstrip("/")) as r:
        shown = np.asarray(Image.open(io.BytesIO(r.read())).convert("RGB"), dtype=np.int16)
    expected = np.asarray(model_transfer(model, pair), dtype=np.int16)
    assert np.abs(shown - expected).mean() < 2.0
    if os.environ.get("RODI_SCREENSHOT_DIR"):
        folder = Path(os.environ["RODI_SCREENSHOT_DIR"])
        folder.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(folder / "serve-transfer.png"))


def test_files_that_are_not_images_are_refused_with_a_message(page, pair, tmp_path):
    (tmp_path / "notes.txt").write_text("not an image")
    page.locator("#appearance input[type=file]").set_input_files(tmp_path / "notes.txt")
    toast(page, "Invalid file type: notes.txt")  # Gradio refuses it in the page
    (tmp_path / "notes.png").write_text("not an image either, whatever its name says")
    page.locator("#appearance input[type=file]").set_input_files(tmp_path / "notes.png")
    page.locator("#pose input[type=file]").set_input_files(pair[1])
    page.click("#transfer")
    message = toast(page, "notes.png: not a readable image")  # rodi refuses it on the server
    assert str(tmp_path) not in message and "gradio" not in message  # no server paths in the page


def test_an_upload_over_the_size_limit_is_refused(page, tmp_path):
    noise = np.random.default_rng(0).integers(0, 256, (800, 800, 3), dtype=np.uint8)
    Image.fromarray(noise).save(tmp_path / "large.png")
    assert (tmp_path / "large.png").stat().st_size > MAX_UPLOAD_MB * 2**20
    page.locator("#appearance input[type=file]").set_input_files(tmp_path / "large.png")
    toast(page, "large")


def test_a_pose_video_is_retargeted_to_a_playable_video(page, pair, model, tmp_path):
    frames = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in pair * 3])
    write_video(tmp_path / "pose.mp4", frames, rate=6)
    page.get_by_role("tab", name="Video").click()
    page.locator("#video-appearance input[type=file]").set_input_files(pair[0])
    page.locator("#pose-video input[type=file]").set_input_files(tmp_path / "pose.mp4")
    page.get_by_label("Side by side: pose | appearance | result").check()
    page.click("#retarget")
    page.wait_for_function("document.querySelector('#video-result video') && "
                           "document.querySelector('#video-result video').videoWidth > 0")
    width, height, duration = page.eval_on_selector(
        "#video-result video", "e => [e.videoWidth, e.videoHeight, e.duration]")
    assert (width, height) == (3 * 4 * model.size, 4 * model.size)  # side by side, scale 4
    assert duration == pytest.approx(1.0, abs=0.2)  # 6 frames at 6 fps


def test_a_cut_pose_video_shows_a_warning_in_the_page(page, pair, tmp_path):
    frames = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in pair * 10])
    declared, decodable = cut_mp4(tmp_path / "dance.mp4", frames, rate=5)
    page.get_by_role("tab", name="Video").click()
    page.locator("#video-appearance input[type=file]").set_input_files(pair[0])
    page.locator("#pose-video input[type=file]").set_input_files(tmp_path / "dance.mp4")
    page.click("#retarget")
    message = toast(page, "declares")
    assert (f"dance.mp4 declares {declared} frames but only {decodable} decode; "
            "the video may be cut") in message
    assert "gradio" not in message  # no server paths in the page
    # and the video came
    page.wait_for_function("document.querySelector('#video-result video') && "
                           "document.querySelector('#video-result video').videoWidth > 0")


def test_a_still_image_as_pose_video_is_refused_in_the_page(page, pair, tmp_path):
    # passes the page's type check
    Image.open(pair[1]).convert("RGB").save(tmp_path / "photo.mp4", format="JPEG")
    page.get_by_role("tab", name="Video").click()
    page.locator("#video-appearance input[type=file]").set_input_files(pair[0])
    page.locator("#pose-video input[type=file]").set_input_files(tmp_path / "photo.mp4")
    page.click("#retarget")
    toast(page, "photo.mp4: a still image (JPEG), not a video; a video is needed here")


def test_a_video_over_the_length_limit_is_refused_by_name(model, pair, tmp_path):
    import gradio as gr

    frames = np.repeat(np.asarray(Image.open(pair[1]).convert("RGB"))[None], 5, axis=0)
    write_video(tmp_path / "cached-name.mp4", frames, rate=5)
    handlers = Handlers(model, Limits(max_video_frames=4), tmp_path)
    upload = {"path": str(tmp_path / "cached-name.mp4"), "orig_name": "dance.mp4"}
    with pytest.raises(gr.Error, match=r"dance\.mp4: 5 frames \(1\.0 s\); at most 4 frames"):
        handlers.retarget({"path": pair[0], "orig_name": "a.png"}, upload, False)
    assert not any(tmp_path.glob("retargeted-*"))


def test_a_still_image_as_pose_video_is_refused_as_one(model, pair, tmp_path):
    import gradio as gr

    handlers = Handlers(model, Limits(), tmp_path)
    for cached, name, kind in [(pair[1], "pose.png", "PNG"),
                               (tmp_path / "cached.mp4", "photo.mp4", "JPEG")]:
        Image.open(pair[1]).convert("RGB").save(tmp_path / "cached.mp4", format="JPEG")
        with pytest.raises(gr.Error) as err:
            handlers.retarget({"path": pair[0], "orig_name": "a.png"},
                              {"path": str(cached), "orig_name": name}, False)
        assert (err.value.message
                == f"{name}: a still image ({kind}), not a video; a video is needed here")
    assert not any(tmp_path.glob("retargeted-*"))


def test_a_cut_pose_video_is_retargeted_with_a_warning_for_the_page(model, pair, tmp_path):
    """gr.Warning shows a message box in the page; called outside a request, as here, it warns."""
    import av

    frames = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in pair * 10])
    declared, decodable = cut_mp4(tmp_path / "cached-name.mp4", frames, rate=5)
    handlers = Handlers(model, Limits(), tmp_path)
    upload = {"path": str(tmp_path / "cached-name.mp4"), "orig_name": "dance.mp4"}
    with pytest.warns(UserWarning) as caught:
        output = handlers.retarget({"path": pair[0], "orig_name": "a.png"}, upload, False)
    shown = [str(w.message) for w in caught if "declares" in str(w.message)]
    assert shown == [f"dance.mp4 declares {declared} frames but only {decodable} decode; "
                     "the video may be cut"]
    with av.open(output) as container:
        assert sum(1 for _ in container.decode(video=0)) == decodable
