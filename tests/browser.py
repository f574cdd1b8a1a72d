"""Headless Chromium for the browser tests (Debian's `chromium` + `chromium-driver`, through
Selenium). Skipped where no browser is installed; CI installs one and sets
LRM_REQUIRE_BROWSER=1, which turns the skip into a failure."""

from __future__ import annotations

import importlib
import os
import shutil
import time

import pytest


def chromium(modules: tuple[str, ...] = ()):
    """A Chrome WebDriver on headless Chromium with software WebGL; `modules` are further Python
    packages the calling test needs (a missing one skips, or fails under LRM_REQUIRE_BROWSER)."""
    missing = [n for n in ("chromium", "chromedriver") if shutil.which(n) is None]
    for name in ("selenium", *modules):
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if missing:
        if os.environ.get("LRM_REQUIRE_BROWSER") == "1":
            pytest.fail(f"LRM_REQUIRE_BROWSER=1 but missing: {', '.join(missing)}")
        pytest.skip(f"no browser: missing {', '.join(missing)}")
    from selenium import webdriver

    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium")
    # WebGL through SwiftShader (software), so 3D viewers draw without a GPU
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--use-angle=swiftshader",
                "--enable-unsafe-swiftshader", "--window-size=1280,1600"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = webdriver.ChromeService(executable_path=shutil.which("chromedriver"))
    return webdriver.Chrome(options=opts, service=service)


def wait_for(predicate, timeout: float, what: str):
    """predicate's first truthy value within `timeout` seconds (exceptions count as not yet)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            value = predicate()
        except Exception:  # the page is still being built
            value = None
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
