"""The trait explorer in a real browser: `promptcam app` serves a tiny saved model on 127.0.0.1 and headless Chromium
(Debian's `chromium`, driven by Playwright's Python package; Playwright's own browser downloads are not used) uploads
images, waits for the results and checks what the page shows.

These tests fail, never skip, when the browser or Playwright is missing: `.ci/run` installs chromium and
`pip install -e ".[dev]"` installs playwright.
"""

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import pytest
from PIL import Image
from transformers import AutoImageProcessor, pipeline

from modeling_promptcam.app import ATLAS_COLUMNS, TraitExplorer
from tests.helpers.app import make_atlas, make_examples, random_image, save_model

REPOSITORY = Path(__file__).resolve().parents[1]
WAIT_MS = 60_000  # the longest any single step in the page may take
START_SECONDS = 240  # starting the server: imports, loading the model, the warm-up (slow on a busy 2-core machine)
TRAITS_LOADED = """() => {
    const images = [...document.querySelectorAll('#top-traits img')];
    return images.length > 0 && images.every((image) => image.complete && image.naturalWidth > 0);
}"""


def chromium_path() -> str:
    path = os.environ.get("PROMPTCAM_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.fail(
            "The browser tests need Chromium and none was found: install Debian's chromium "
            "(apt-get install chromium; .ci/run does this) or set PROMPTCAM_CHROMIUM to a Chromium binary."
        )
    return path


def playwright_session():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail(
            'The browser tests need Playwright\'s Python package: pip install -e ".[dev]" (or pip install '
            "playwright); it drives the system chromium, so no `playwright install` download is needed."
        )
    return sync_playwright()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_serving(url: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"promptcam app exited with code {process.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(1)
    pytest.fail(f"promptcam app did not answer at {url} within {START_SECONDS} s:\n{log.read_text()}")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`python -m modeling_promptcam app` in its own process, on a free port, host left at its default."""
    folder = tmp_path_factory.mktemp("model")
    model = save_model(folder)
    examples = make_examples(tmp_path_factory.mktemp("examples") / "birds")
    work = tmp_path_factory.mktemp("server")
    atlas = make_atlas(work / "atlas.json", model, examples)
    log = work / "app.log"
    port = free_port()
    environment = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPOSITORY), os.environ.get("PYTHONPATH")])),
        GRADIO_ANALYTICS_ENABLED="False",
        GRADIO_TEMP_DIR=str(work / "gradio"),
        HF_HUB_OFFLINE="1",
        OMP_NUM_THREADS="1",
    )
    command = [sys.executable, "-m", "modeling_promptcam", "app", "--model", str(folder), "--examples", str(examples)]
    command += ["--atlas", str(work / "atlas.json")]
    with open(log, "wb") as output:
        process = subprocess.Popen(
            command + ["--port", str(port)], stdout=output, stderr=subprocess.STDOUT, env=environment, cwd=work
        )
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_until_serving(url, process, log)
        yield SimpleNamespace(url=url, port=port, folder=folder, model=model, examples=examples, log=log, atlas=atlas)
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=30)


@pytest.fixture
def page(server):
    """A headless Chromium page that may only talk to the app: any other request is recorded and blocked."""
    with playwright_session() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium_path(), headless=True, args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 2000})
            page.set_default_timeout(WAIT_MS)
            elsewhere = []

            def only_the_app(route):
                if route.request.url.startswith(f"http://127.0.0.1:{server.port}/"):
                    route.continue_()
                else:
                    elsewhere.append(route.request.url)
                    route.abort()

            page.route("**/*", only_the_app)
            page.goto(server.url)
            page.wait_for_selector("#image-input input[type=file]", state="attached")
            yield page
            assert elsewhere == [], "the page tried to reach something other than the app"
        finally:
            browser.close()


def shown_label(page) -> str:
    selector = "#predictions [data-testid=label-output-value]"
    page.wait_for_function(f"document.querySelector('{selector}')?.textContent.trim().length > 0")
    return page.inner_text(selector).strip()


def natural_sizes(page, selector: str) -> list[list]:
    for image in page.locator(selector).all():
        image.scroll_into_view_if_needed()  # gallery images load lazily
    page.wait_for_function(
        f"""() => [...document.querySelectorAll('{selector}')].every((image) => image.complete && image.naturalWidth > 0)"""
    )
    return page.eval_on_selector_all(selector, "images => images.map((i) => [i.naturalWidth, i.naturalHeight, i.alt])")


def test_upload_shows_the_pipeline_label_and_the_trait_images(server, page, tmp_path):
    path = tmp_path / "bird.png"
    random_image(1, size=(200, 150)).save(path)
    expected_label = pipeline("image-classification", model=str(server.folder))(str(path))[0]["label"]
    pixel_values = AutoImageProcessor.from_pretrained(server.folder)(
        Image.open(path), return_tensors="pt"
    ).pixel_values
    top_traits = server.model.rank_traits(pixel_values)[0].top_traits
    grid_size = TraitExplorer(server.model).explain(str(path)).heads.size  # 1200 x 290 for 4 heads

    started = time.monotonic()
    page.locator("#image-input input[type=file]").set_input_files(str(path))
    label = shown_label(page)
    page.wait_for_function(TRAITS_LOADED)
    answered = time.monotonic() - started

    assert label == expected_label
    traits = natural_sizes(page, "#top-traits img")
    assert traits == [[200, 150, f"rank {rank + 1}: head {head}"] for rank, head in enumerate(top_traits)]
    assert [size[:2] for size in natural_sizes(page, "#head-grid img")] == [list(grid_size)]
    assert page.locator("#misclassified img").count() == 0  # no true class given

    screenshot = tmp_path / "trait_explorer.png"
    page.screenshot(path=str(screenshot), full_page=True)
    assert screenshot.stat().st_size > 10_000
    print(f"\nscreenshot: {screenshot}; top label {label!r}, traits {top_traits}; answered in {answered:.1f} s")


def test_bad_upload_shows_a_message_and_the_app_keeps_serving(server, page, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\nthis is not really a PNG")
    page.locator("#image-input input[type=file]").set_input_files(str(broken))
    message = page.get_by_text("broken.png is not an image this app can read")
    message.wait_for(state="visible")
    assert "upload a JPEG, PNG" in message.inner_text()

    # examples from the folder tree: the folder gives the true class (a numbered folder name shown as the model's)
    examples = page.locator("#examples")
    assert examples.get_by_text("Sooty_Albatross", exact=True).count() == 2
    assert examples.get_by_text("Laysan_Albatross", exact=True).count() == 2
    example = server.examples / "Laysan_Albatross" / "bird0.png"
    expected_label = pipeline("image-classification", model=str(server.folder))(str(example))[0]["label"]
    examples.get_by_text("Laysan_Albatross").first.click()  # true vs predicted is shown when they differ
    assert shown_label(page) == expected_label
    page.wait_for_function(TRAITS_LOADED)
    summary = page.locator("#summary")
    if expected_label == "Laysan_Albatross":
        summary.get_by_text("Correct: the prediction is the true class.").wait_for()
    else:
        summary.get_by_text("Misclassified: the true class is Laysan_Albatross").wait_for()
        assert natural_sizes(page, "#misclassified img")[0][0] > 500

    page.get_by_role("tab", name="Class gallery").click()
    page.locator("#gallery-class input").fill("Laysan_Albatross")
    page.locator("#gallery-button").click()
    page.wait_for_function("document.querySelectorAll('#gallery img').length == 2")
    captions = [alt for _, _, alt in natural_sizes(page, "#gallery img")]
    assert [caption.split(":")[0] for caption in captions] == ["bird0.png", "bird1.png"]


def test_the_class_atlas_tab_shows_a_class_heads_in_rank_order(server, page, tmp_path):
    entry = server.atlas.classes["Laysan_Albatross"]
    page.get_by_role("tab", name="Class atlas").click()
    page.locator("#atlas-class input").fill("Laysan_Albatross")
    page.locator("#atlas-button").click()
    page.locator("#atlas-summary").get_by_text("Laysan_Albatross: 2 image(s), 4 heads in rank order.").wait_for()
    page.wait_for_function("document.querySelectorAll('#atlas-gallery img').length == 4")
    captions = [alt for _, _, alt in natural_sizes(page, "#atlas-gallery img")]
    assert [caption.split(" (")[0] for caption in captions] == [
        f"rank {rank + 1}: head {head.head}, {head.named_part}" for rank, head in enumerate(entry.heads)
    ]
    # the table's cells, row after row, after its header (Gradio draws a virtual table: read its text)
    columns = len(ATLAS_COLUMNS)
    page.locator("#atlas-table [role=grid][aria-rowcount='5']").wait_for(state="attached")
    page.wait_for_function(
        f"document.querySelector('#atlas-table').innerText.includes('{entry.heads[-1].named_part}')"
    )
    texts = [text.strip() for text in re.split(r"[\t\n]", page.inner_text("#atlas-table")) if text.strip()]
    cells = texts[texts.index(ATLAS_COLUMNS[-1]) + 1 :]
    rows = [cells[start : start + columns] for start in range(0, len(cells), columns)]
    # rank, head and named part of each row, in the atlas's rank order
    assert [row[:3] for row in rows[-4:]] == [
        [str(rank + 1), str(head.head), head.named_part] for rank, head in enumerate(entry.heads)
    ]
    screenshot = tmp_path / "class_atlas.png"
    page.screenshot(path=str(screenshot), full_page=True)
    assert screenshot.stat().st_size > 10_000
    print(f"\nscreenshot: {screenshot}")


def test_concurrent_requests_are_queued_and_the_server_binds_to_localhost(server, tmp_path):
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    paths = []
    for seed in range(4):
        paths.append(tmp_path / f"bird{seed}.png")
        random_image(20 + seed).save(paths[-1])
    not_an_image = tmp_path / "notes.png"
    not_an_image.write_text("field notes")
    classifier = pipeline("image-classification", model=str(server.folder))
    client = Client(server.url, verbose=False)
    settings = (None, None, "paper", "number", 2, 0.5, 3)
    jobs = [client.submit(handle_file(str(path)), *settings, api_name="/explain") for path in paths]
    bad = client.submit(handle_file(str(not_an_image)), *settings, api_name="/explain")
    jobs.append(client.submit(handle_file(str(paths[0])), *settings, api_name="/explain"))  # after the bad one

    labels = [job.result(timeout=WAIT_MS / 1000)[0]["label"] for job in jobs]
    assert labels == [classifier(str(path))[0]["label"] for path in paths + paths[:1]]
    with pytest.raises(AppError, match="notes.png is not an image this app can read"):
        bad.result(timeout=WAIT_MS / 1000)
    assert all(len(job.result()[2]) == 2 for job in jobs)  # two trait overlays each (fixed number 2)
    assert f"Running on local URL:  http://127.0.0.1:{server.port}" in server.log.read_text()


def test_files_on_the_server_that_were_not_uploaded_are_refused(server, tmp_path):
    # the app reads uploads itself (no Gradio preprocessing); Gradio must still refuse a path nobody uploaded
    private = tmp_path / "private.png"
    random_image(30).save(private)
    file_data = {"path": str(private), "meta": {"_type": "gradio.FileData"}}
    body = json.dumps({"data": [file_data, None, None, "paper", "misclassified", 2, 0.5, 3]}).encode()
    request = urllib.request.Request(
        f"{server.url}gradio_api/call/explain", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        event_id = json.load(response)["event_id"]
    with urllib.request.urlopen(f"{server.url}gradio_api/call/explain/{event_id}", timeout=WAIT_MS / 1000) as response:
        stream = response.read().decode()
    assert stream.startswith("event: error") and "confidences" not in stream
    assert (
        f"Cannot move {private} to the gradio cache dir because it was not uploaded by a user"
        in server.log.read_text()
    )
