"""The web demo driven as a user drives it: headless Chromium (tests/browser.py) against a real
server on 127.0.0.1."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from browser import chromium, wait_for as _wait
from test_demo import _serve, session, slow_turntable, views_session  # noqa: F401  (the fixtures)

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "chair_office.png"


def _browser():
    return chromium(("gradio",))


@pytest.fixture
def page_session(session, tmp_path):
    """The test's random tiny model; with LRM_DEMO_SCREENSHOT=PATH the bundled model, and the
    page's screenshot is kept at PATH (how docs/images/demo.png is made)."""
    if not os.environ.get("LRM_DEMO_SCREENSHOT"):
        return session
    from lrm.demo import DemoSession
    from lrm.pipeline import Reconstructor

    return DemoSession(Reconstructor("default", device="cpu", dtype="fp32"), tmp_path / "bundled")


def test_upload_reconstruct_and_download_in_a_real_browser(page_session, tmp_path):
    """Upload examples/chair_office.png, press reconstruct: the page shows what the model saw,
    the timings, the mesh viewer and GLB + OBJ downloads whose bytes are the session's files."""
    from selenium.webdriver.common.by import By

    session = page_session
    driver = _browser()
    ui, url = _serve(session)
    try:
        driver.get(url)
        _wait(lambda: driver.find_elements(By.CSS_SELECTOR, "input[type=file]"), 60, "the upload field")
        body = _wait(lambda: driver.find_element(By.TAG_NAME, "body").text, 30, "the page text")
        assert "Model: tiny on cpu, precision fp32" in " ".join(body.split()), body[:300]  # model named
        driver.find_elements(By.CSS_SELECTOR, "input[type=file]")[0].send_keys(str(EXAMPLE))
        _wait(lambda: driver.find_elements(By.CSS_SELECTOR, "img[src*='chair_office'], img[src*='/file=']"), 60,
              "the uploaded image")
        resolution = driver.find_elements(By.CSS_SELECTOR, "input[type=number]")[1]  # ratio, resolution, frames
        resolution.clear()
        resolution.send_keys("64\t")
        button = _wait(lambda: [b for b in driver.find_elements(By.TAG_NAME, "button")
                                if b.text.strip() == "reconstruct"], 30, "the reconstruct button")[0]
        button.click()

        def timings():
            for area in driver.find_elements(By.CSS_SELECTOR, "textarea"):
                if area.get_attribute("value").startswith("preprocess"):
                    return area.get_attribute("value")
            return None

        message = _wait(timings, 240, "the timings of a finished job")
        assert session.counter == 1 and "mesh" in message
        assert "encode" in message and "mesh" in message
        links = _wait(lambda: [a.get_attribute("href") for a in driver.find_elements(By.CSS_SELECTOR, "a[href]")
                               if a.get_attribute("href").endswith(("mesh.glb", "mesh.obj.zip", "splat.ply"))], 30,
                      "download links")
        assert {"mesh.glb", "mesh.obj.zip"} <= {h.rsplit("/", 1)[-1] for h in links}
        _wait(lambda: driver.find_elements(By.CSS_SELECTOR, "canvas"), 30, "the 3D viewer canvas")
        # the file the page offers is the one the session wrote
        import urllib.request

        glb = next(h for h in links if h.endswith("mesh.glb"))
        with urllib.request.urlopen(glb) as r:
            served = r.read()
        assert served[:4] == b"glTF" and served == (session.workdir / "0001" / "mesh.glb").read_bytes()
        canvas = driver.find_elements(By.CSS_SELECTOR, "canvas")[0]
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", canvas)
        from PIL import Image

        def drawn() -> bool:  # the viewer loads the GLB, then draws: > 2 % of it not background
            canvas.screenshot(str(tmp_path / "viewer.png"))
            viewer = np.asarray(Image.open(tmp_path / "viewer.png").convert("L"), np.float32)[40:-10, 10:-10]
            return (viewer < 200).mean() > 0.02  # measured 0.28 (tiny model)

        _wait(drawn, 30, "the 3D viewer to draw the mesh")
        shot = tmp_path / "demo.png"
        driver.execute_script("window.scrollTo(0, 0);")
        driver.save_screenshot(str(shot))

        pixels = np.asarray(Image.open(shot).convert("L"), np.float32)
        assert pixels.std() > 5  # a rendered page, not a blank one
        if os.environ.get("LRM_DEMO_SCREENSHOT"):
            shutil.copyfile(shot, os.environ["LRM_DEMO_SCREENSHOT"])
        severe = [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert not [m for m in severe if "WebGPU" not in m and "favicon" not in m], severe
    finally:
        driver.quit()
        ui.close()


def test_closing_the_page_stops_its_job(session, tmp_path, monkeypatch):  # noqa: F811 (fixture)
    """A user who presses reconstruct and then leaves the page leaves no zombie: the job stops
    within a few turntable frames, and the worker is free for the next user."""
    from selenium.webdriver.common.by import By

    slow_turntable(session, monkeypatch)  # 0.1 s a frame: a 120-frame turntable takes 12 s
    driver = _browser()
    ui, url = _serve(session)
    try:
        driver.get(url)
        _wait(lambda: driver.find_elements(By.CSS_SELECTOR, "input[type=file]"), 60, "the upload field")
        driver.find_elements(By.CSS_SELECTOR, "input[type=file]")[0].send_keys(str(EXAMPLE))
        _wait(lambda: driver.find_elements(By.CSS_SELECTOR, "img[src*='chair_office'], img[src*='/file=']"), 60,
              "the uploaded image")
        numbers = driver.find_elements(By.CSS_SELECTOR, "input[type=number]")  # ratio, resolution, frames
        numbers[1].clear()
        numbers[1].send_keys("64\t")
        numbers[2].clear()
        numbers[2].send_keys("120\t")
        _wait(lambda: [b for b in driver.find_elements(By.TAG_NAME, "button") if b.text.strip() == "reconstruct"],
              30, "the reconstruct button")[0].click()
        _wait(lambda: session.frames_rendered >= 10, 120, "the job's turntable")
        left = session.frames_rendered
        driver.get("about:blank")  # the user leaves
        # the server notices the closed stream (Gradio's timing: 1-4 s measured, later under load),
        # and the job stops at its next step; a zombie would render all 120 frames
        counts, t0 = [left], time.monotonic()
        while time.monotonic() - t0 < 10.0 and not (len(counts) > 3 and counts[-1] == counts[-4]):
            time.sleep(0.5)
            counts.append(session.frames_rendered)
        stopped = counts[-1]
        time.sleep(1.5)
        assert session.frames_rendered == stopped and stopped - left <= 60, (left, counts, session.frames_rendered)
    finally:
        driver.quit()
        ui.close()


def test_several_views_tab_in_a_real_browser(views_session, tmp_path):  # noqa: F811 (fixture)
    """With a model that takes several views, the page has a "several views" tab: upload a
    Zero123++ sheet, press its button, and the page shows the six views' timings, the viewer
    and the downloads, whose GLB is the session's file."""
    from PIL import Image
    from selenium.webdriver.common.by import By

    sheet = np.zeros((960, 640, 4), np.uint8)
    sheet[100:220, 100:220] = [200, 80, 40, 255]
    Image.fromarray(sheet).save(tmp_path / "sheet.png")
    driver = _browser()
    ui, url = _serve(views_session)
    try:
        driver.get(url)
        tab = _wait(lambda: [b for b in driver.find_elements(By.CSS_SELECTOR, "button[role=tab]")
                             if b.text.strip() == "several views"], 60, "the several-views tab")[0]
        tab.click()
        button = _wait(lambda: [b for b in driver.find_elements(By.TAG_NAME, "button")
                                if b.text.strip() == "reconstruct from views" and b.is_displayed()], 30,
                       "the views button")[0]
        upload = _wait(lambda: [i for i in driver.find_elements(By.CSS_SELECTOR, "input[type=file]")
                                if i.get_attribute("multiple") is not None], 30, "the views upload field")[0]
        upload.send_keys(str(tmp_path / "sheet.png"))
        _wait(lambda: driver.find_elements(By.CSS_SELECTOR, "td.filename[aria-label='sheet.png']"), 60,
              "the uploaded sheet listed")
        button.click()

        def timings():
            for area in driver.find_elements(By.CSS_SELECTOR, "textarea"):
                if area.get_attribute("value").startswith("6 views | preprocess"):
                    return area.get_attribute("value")
            return None

        _wait(timings, 240, "the timings of the six-view job")
        links = _wait(lambda: [a.get_attribute("href") for a in driver.find_elements(By.CSS_SELECTOR, "a[href]")
                               if a.get_attribute("href").endswith("mesh.glb")], 30, "the GLB download")
        _wait(lambda: driver.find_elements(By.CSS_SELECTOR, "canvas"), 30, "the 3D viewer canvas")
        import urllib.request

        with urllib.request.urlopen(links[0]) as r:
            served = r.read()
        written = sorted(views_session.workdir.glob("*/mesh.glb"))[-1]
        assert served[:4] == b"glTF" and served == written.read_bytes()
    finally:
        driver.quit()
        ui.close()
