"""The app in a real browser: headless Debian Chromium driven by Playwright uploads the astronaut photo and waits for
the annotated photo and the explanation panels (no click needed), removes it and sees the panels emptied, then clicks
the two-face example, which is explained at once; a photo without a face is classified whole once the box is ticked;
and the Live tab's webcam stream, fed by Chromium's fake camera with a video of the astronaut photo.
Skipped when Chromium or Playwright is missing (never downloads one).

A screenshot is saved under the test's tmp dir and copied to /tmp/app_screenshot.png for a person to look at.
"""
from __future__ import annotations

import shutil
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app_helpers import ASTRONAUT, TWO_FACES, free_port, import_app, make_checkpoints
from benchmarks.app_latency import CHROMIUM, CHROMIUM_ARGS  # the one Chromium the benchmark drives too
pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(address, app module) of the app launched on tiny checkpoints."""
    if not CHROMIUM.exists():
        pytest.skip("Debian chromium not installed at /usr/bin/chromium")
    pytest.importorskip("playwright.sync_api")
    checkpoint, baseline = make_checkpoints(tmp_path_factory.mktemp("checkpoints"))
    with pytest.MonkeyPatch.context() as mp:
        app = import_app(mp, "fer_app_in_browser", checkpoint, baseline)
        port = free_port()
        app.demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=port, quiet=True,
                        **app.LAUNCH_OPTIONS)
        try:
            yield f"http://127.0.0.1:{port}/", app
        finally:
            app.demo.close()


@pytest.fixture(scope="module")
def served_app(served):
    return served[0]


@contextmanager
def browser_page(url: str, extra_args=(), permissions=()):
    """A page of headless Debian Chromium at `url`; the browser is closed however the test ends."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS + list(extra_args))
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 1000}, permissions=list(permissions))
            page = context.new_page()
            page.api_requests = []  # what the page asked the server, for the message of a test that times out
            page.on("request", lambda r: page.api_requests.append(f"{r.method} {r.url.split('/gradio_api/')[-1][:40]}")
                    if "/gradio_api/" in r.url else None)
            # the page is ready once its client holds the session's heartbeat connection, as it does long before a
            # visitor can pick a file
            with page.expect_request(lambda r: "/gradio_api/heartbeat/" in r.url, timeout=60_000):
                page.goto(url, wait_until="domcontentloaded", timeout=60_000)
            yield page
        finally:
            browser.close()


def wait_for_text(page, text: str, timeout: float = 90_000) -> None:
    """Wait until `text` is shown; if it never is, fail with what the page says and asked instead (and a screenshot
    in /tmp/app_screenshot_failure.png), so that a failure in CI can be told apart from a slow machine."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.get_by_text(text).first.wait_for(timeout=timeout)
        return
    except PlaywrightTimeout:
        pass  # failed below, outside the except, so that the report is this message and not Playwright's trace too
    page.screenshot(path="/tmp/app_screenshot_failure.png", full_page=True)
    notice = page.locator("#notice").inner_text()
    pytest.fail(f"{text!r} not shown in {timeout / 1000:g} s; the notice says {notice!r}; the page's last "
                f"requests: {page.api_requests[-12:]}", pytrace=False)


def test_upload_photo_and_see_explanations(served_app, tmp_path):
    with browser_page(served_app) as page:
        page.get_by_text("Device:").first.wait_for(timeout=60_000)  # gradio keeps a connection open: no networkidle
        assert page.get_by_text("Device:").count() >= 1  # the header says where the models run
        page.locator("input[type=file]").first.set_input_files(str(ASTRONAUT))  # explained without a click
        # the explanation panels are filled when the faithfulness table has its random-order row
        wait_for_text(page, "random order (reference)")
        page.get_by_text("Strongest regions").first.wait_for(timeout=10_000)
        assert page.get_by_text("1 face found").count() >= 1
        images = page.locator("img[src*='/file=']")
        assert images.count() >= 6, images.count()  # photo, annotated photo, bars, three maps, grid...
        shot = tmp_path / "app.png"
        page.screenshot(path=str(shot), full_page=True)
        shutil.copy(shot, "/tmp/app_screenshot.png")
        assert shot.stat().st_size > 20_000

        # removing the photo takes its explanations with it
        page.get_by_role("button", name="Remove Image").first.click()
        page.get_by_text("Strongest regions").first.wait_for(state="detached", timeout=30_000)
        assert page.get_by_text("1 face found").count() == 0 and \
            page.get_by_text("random order (reference)").count() == 0

        # a photo replaced while the previous one is still being analysed: the panels end on the new one
        page.locator("input[type=file]").first.set_input_files(str(ASTRONAUT))
        page.get_by_role("button", name="Remove Image").first.click()
        page.locator("input[type=file]").first.set_input_files(str(TWO_FACES))
        wait_for_text(page, "2 faces found")
        page.wait_for_timeout(3_000)  # nothing queued behind it may bring the astronaut back
        assert page.get_by_text("1 face found").count() == 0 and page.get_by_text("2 faces found").count() >= 1
        page.get_by_role("button", name="Remove Image").first.click()
        page.get_by_text("Strongest regions").first.wait_for(state="detached", timeout=30_000)

        # clicking an example explains it at once (the notice comes with the panels, in the same answer)
        page.locator("img[src*='two_faces']").first.click()
        wait_for_text(page, "2 faces found")

        # the prior-correction slider re-decides the analysed photo as soon as it is let go
        slider = page.locator("#prior_correction input[type=range]")
        slider.fill("1")
        slider.dispatch_event("pointerup")  # what letting go of the handle sends
        page.get_by_text("prior correction τ = 1").first.wait_for(timeout=90_000)

        page.get_by_role("tab", name="Compare with baseline").click()
        page.get_by_text("they agree").or_(page.get_by_text("they disagree")).first.wait_for(timeout=10_000)
        page.screenshot(path=str(tmp_path / "compare.png"), full_page=True)
        shutil.copy(tmp_path / "compare.png", "/tmp/app_screenshot_compare.png")

        page.get_by_role("tab", name="Model card").click()
        page.get_by_text("The paper's claims").first.wait_for(timeout=10_000)
        assert page.get_by_text("94.20 %").count() >= 1 and page.get_by_text("Not for decisions").count() >= 1
        page.screenshot(path=str(tmp_path / "card.png"), full_page=True)
        shutil.copy(tmp_path / "card.png", "/tmp/app_screenshot_card.png")


def test_a_photo_without_a_face_is_classified_whole_once_asked(served_app, tmp_path):
    """No face: the notice says so and points to the box; ticking it analyses the same photo again as one face, and
    the Analyze button runs that analysis once more."""
    blank = tmp_path / "blank.png"
    Image.new("RGB", (200, 150), (120, 140, 160)).save(blank)
    with browser_page(served_app) as page:
        page.locator("input[type=file]").first.set_input_files(str(blank))
        page.locator("#notice").get_by_text("No face found").first.wait_for(timeout=60_000)
        page.get_by_label("No face found? Classify the whole picture as one face").check()
        page.get_by_text("the whole image (its centre square) was used").first.wait_for(timeout=60_000)
        page.get_by_text("Strongest regions").first.wait_for(timeout=30_000)
        page.get_by_role("button", name="Analyze").click()
        page.get_by_text("Strongest regions").first.wait_for(timeout=30_000)
        assert page.get_by_text("the whole image (its centre square) was used").count() >= 1


def test_the_slider_moved_during_an_analysis_is_applied_to_it(served, monkeypatch):
    """The slider let go while a photo is still being analysed (slowed down here to make sure of it): the panels end
    at the slider's value, not at the value the analysis started with."""
    url, app = served
    analyze = app.views.analyze

    def slow_analyze(*args, **kwargs):
        time.sleep(3)
        return analyze(*args, **kwargs)

    monkeypatch.setattr(app.views, "analyze", slow_analyze)
    with browser_page(url) as page:
        page.locator("input[type=file]").first.set_input_files(str(ASTRONAUT))
        slider = page.locator("#prior_correction input[type=range]")
        slider.fill("1")
        slider.dispatch_event("pointerup")  # let go while the analysis (started at τ = 0) still runs
        wait_for_text(page, "prior correction τ = 1")
        page.wait_for_timeout(2_000)
        assert page.get_by_text("Strongest regions").count() >= 1
        assert page.get_by_text("prior correction τ = 1").count() >= 1


def write_camera_video(path: Path, photo: Path, frames: int = 30, size=(320, 240)) -> None:
    """A Y4M video (YUV 4:2:0) of `photo` standing still: what Chromium's fake camera plays in a loop."""
    still = Image.open(photo).convert("RGB")
    still.thumbnail(size)
    frame = Image.new("RGB", size, "gray")
    frame.paste(still, ((size[0] - still.width) // 2, (size[1] - still.height) // 2))
    ycc = np.asarray(frame.convert("YCbCr"))
    planes = ycc[..., 0].tobytes() + ycc[::2, ::2, 1].tobytes() + ycc[::2, ::2, 2].tobytes()
    with open(path, "wb") as f:
        f.write(f"YUV4MPEG2 W{size[0]} H{size[1]} F10:1 Ip A1:1 C420jpeg\n".encode())
        f.write((b"FRAME\n" + planes) * frames)


def test_live_tab_streams_the_webcam(served_app, tmp_path):
    """The /live stream event, which only a browser can drive: start the webcam, see the face's label and overlay."""
    video = tmp_path / "camera.y4m"
    write_camera_video(video, ASTRONAUT)
    fake_camera = ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                   f"--use-file-for-fake-video-capture={video}"]
    with browser_page(served_app, fake_camera, ["camera"]) as page:
        page.get_by_role("tab", name="Live").click()
        page.get_by_role("button", name="Click to Access Webcam").click()
        page.get_by_role("button", name="capture photo").click()  # gradio's record button starts the stream
        page.locator("#live_label").get_by_text("1 face(s)").wait_for(timeout=60_000)
        page.locator("#live_overlay img").first.wait_for(timeout=10_000)  # the attention overlay came back
        page.screenshot(path=str(tmp_path / "live.png"))
        shutil.copy(tmp_path / "live.png", "/tmp/app_screenshot_live.png")
