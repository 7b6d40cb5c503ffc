"""The Write tab's "Run in my browser" in Debian's Chromium: the text the page samples is
byte for byte what its recipe (`studio sample ... --precision fp32`) prints; the page
asks nothing of another host; the server opens only the files the switch needs."""

from __future__ import annotations

import os
import shlex
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import quote, urlsplit

import pytest

from studio.webexport import CHROMIUM, CHROMIUM_ARGS, STATIC, VENDOR

ROOT = Path(__file__).resolve().parent.parent
FETCHED = all((VENDOR / name).is_file() for name in ("ort.wasm.min.js", "ort-wasm-simd-threaded.wasm"))

# (prime, temperature, top-k, top-p, seed, length)
CASES = [
    ("ROMEO:", "0.8", "0", "1", "3", "80"),
    ("", "1", "7", "1", "12", "60"),
    ("KING:", "1.2", "0", "0.85", "5", "70"),
    ("JULIET:", "1", "0", "1", "4", "90"),  # no rule: the Gumbel-max draw
]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    if not FETCHED:
        pytest.skip("onnxruntime-web is not fetched: `make install` runs scripts/fetch_onnxruntime_web.py")
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (`make install` installs it)")
    port = free_port()
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT))
    env.update(NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost", STUDIO_MODELS="")
    log = open(tmp_path_factory.mktemp("web") / "server.log", "w")  # noqa: SIM115 (the server writes to it)
    server = subprocess.Popen(
        [sys.executable, "-m", "web.app", "--port", str(port)], cwd=ROOT, env=env, stdout=log, stderr=log
    )
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 180
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url, timeout=5)
            break
        except OSError:
            assert server.poll() is None, "the studio exited while starting"
            time.sleep(1)
    yield url
    server.terminate()
    server.wait(timeout=30)
    log.close()


@pytest.fixture(scope="module")
def page(studio):
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        requests: list[str] = []
        page.on("request", lambda request: requests.append(request.url))
        page.goto(studio, timeout=120_000)
        page.wait_for_selector("#write-button", timeout=120_000)
        yield page, requests
        browser.close()


def fill(page, elem_id: str, value: str, kind: str = "input") -> None:
    page.fill(f"#{elem_id} {kind}", value)


def test_in_browser_write_equals_its_recipe(page):
    page, requests = page
    page.click("#write-in-browser input")
    page.wait_for_selector("#write-browser-button", state="visible")
    assert not page.is_visible("#write-button")
    for prime, temperature, top_k, top_p, seed, length in CASES:
        fill(page, "write-prime", prime, "textarea")
        fill(page, "write-temperature", temperature)
        fill(page, "write-top-k", top_k)
        fill(page, "write-top-p", top_p)
        fill(page, "write-seed", seed)
        fill(page, "write-length", length)
        page.click("#write-browser-button")
        page.wait_for_function(
            f"document.querySelector('#write-recipe textarea').value.includes('--seed {seed}') && "
            "document.querySelector('#write-stats').innerText.includes('in your browser')",
            timeout=120_000,
        )
        text = page.input_value("#write-text textarea")
        recipe = page.input_value("#write-recipe textarea")
        assert recipe.endswith("--precision fp32") and "--model prose" in recipe
        args = shlex.split(recipe)
        assert args[:2] == ["studio", "sample"]
        done = subprocess.run(
            [sys.executable, "-m", "studio", *args[1:]], capture_output=True, text=True, cwd=ROOT, timeout=300
        )
        assert done.returncode == 0, done.stderr
        assert text + "\n" == done.stdout, (recipe, text)
    host = urlsplit(page.url).netloc
    assert all(urlsplit(r).netloc == host for r in requests if not r.startswith("data:")), requests
    assert any(r.endswith("ort-wasm-simd-threaded.wasm") for r in requests)
    assert sum(r.endswith("model.onnx") for r in requests) == 1  # the graph loads once per page


def test_in_browser_refuses_beams_with_a_message(page):
    page, _ = page
    if not page.is_visible("#write-browser-button"):
        page.click("#write-in-browser input")
    fill(page, "write-beams", "3")
    page.click("#write-browser-button")
    page.wait_for_selector("text=beam search runs on the server", timeout=60_000)
    fill(page, "write-beams", "1")


def test_only_the_switchs_files_are_served(studio):
    def status(path: Path) -> int:
        try:
            return urllib.request.urlopen(studio + "gradio_api/file=" + quote(str(path)), timeout=30).status
        except urllib.error.HTTPError as error:
            return error.code

    assert status(STATIC / "studio-sampler.js") == 200
    assert status(VENDOR / "ort-wasm-simd-threaded.wasm") == 200
    for refused in [STATIC / "site" / "page.js", VENDOR / "VERSION.json", ROOT / "export" / "prose" / "model.onnx"]:
        assert status(refused) in (403, 404), refused


def summary_value(page) -> str:
    return page.evaluate(
        "(() => { const box = document.querySelector('#handwrite-summary textarea, #handwrite-summary input');"
        " return box ? box.value : ''; })()"
    )


@pytest.mark.parametrize(
    "model, text, seed", [("handwriting", "Sequence Studio", "1"), ("handwriting", "a b", "7"), ("doodle", None, "2")]
)
def test_in_browser_handwriting_writes_the_recipes_svg(page, tmp_path, model, text, seed):
    page, requests = page
    page.click("button[role=tab]:has-text('Handwrite')")
    if not page.is_visible("#handwrite-browser-button"):
        page.click("#handwrite-in-browser input")
        page.wait_for_selector("#handwrite-browser-button", state="visible")
    if page.input_value("#handwrite-model input") != model:
        page.fill("#handwrite-model input", model)
        page.keyboard.press("Enter")
        page.wait_for_timeout(1500)
    if text is not None:
        page.fill("#handwrite-text textarea", text)
    page.fill("#handwrite-seed input", seed)
    page.evaluate("window.studioBrowserRun = null")
    page.click("#handwrite-browser-button")
    page.wait_for_function("window.studioBrowserRun && window.studioBrowserRun.svg", timeout=180_000)
    assert "in your browser" in summary_value(page)
    svg = page.evaluate("window.studioBrowserRun.svg")
    recipe = page.input_value("#handwrite-recipe textarea")
    assert f"--model {model}" in recipe and f"--seed {seed}" in recipe and "--precision fp32" in recipe
    args = shlex.split(recipe)
    done = subprocess.run(
        [sys.executable, "-m", "studio", *args[1:]], capture_output=True, text=True, cwd=tmp_path, timeout=300
    )
    assert done.returncode == 0, done.stderr
    written = tmp_path / args[args.index("--out") + 1]
    assert svg == written.read_text(encoding="utf-8")
    assert page.inner_html("#handwrite-svg").count("<path") == svg.count("<path")
    host = urlsplit(page.url).netloc
    assert all(urlsplit(r).netloc == host for r in requests if not r.startswith("data:"))
