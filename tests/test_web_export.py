"""`studio export-web`: the static site in Debian's Chromium gives, byte for byte, what
`studio sample --precision fp32` prints, and asks nothing of any other host."""

from __future__ import annotations

import functools
import http.server
import json
import shlex
import subprocess
import sys
import threading
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import pytest
from typer.testing import CliRunner

from studio.cli import app
from studio.webexport import CHROMIUM, CHROMIUM_ARGS, MANIFEST, VENDOR, export_web, vendor_files

ROOT = Path(__file__).resolve().parent.parent
FETCHED = all((VENDOR / name).is_file() for name in ("ort.wasm.min.js", "ort-wasm-simd-threaded.wasm"))
needs_ort = pytest.mark.skipif(
    not FETCHED, reason="onnxruntime-web is not fetched: `make install` runs scripts/fetch_onnxruntime_web.py"
)

# (URL parameters, the same settings as `studio sample` options): seeds, top-k, top-p
CASES = [
    ({"prime": "ROMEO:", "temp": "0.8", "seed": "3", "length": "120"}, ["--prime", "ROMEO:", "--temp", "0.8"]),
    ({"seed": "11", "top_k": "5", "length": "90"}, ["--top-k", "5"]),
    (
        {"prime": "First Citizen:\nWe are", "temp": "1.1", "top_p": "0.9", "seed": "2024", "length": "100"},
        ["--prime", "First Citizen:\nWe are", "--temp", "1.1", "--top-p", "0.9"],
    ),
]


def cli_sample(options: list[str], seed: str, length: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "studio", "sample", "--model", "prose", "--precision", "fp32"]
        + options
        + ["--seed", seed, "--length", length],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    if not FETCHED:
        pytest.skip("onnxruntime-web is not fetched: `make install` runs scripts/fetch_onnxruntime_web.py")
    folder = tmp_path_factory.mktemp("web") / "prose-site"
    export_web("prose", folder)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/", folder
    server.shutdown()


@pytest.fixture(scope="module")
def chromium():
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (`make install` installs it)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def open_page(chromium, url: str):
    """A fresh page at ``url``; returns (page, every URL it requested)."""
    requests: list[str] = []
    page = chromium.new_page()
    page.on("request", lambda request: requests.append(request.url))
    page.goto(url, timeout=120_000)
    return page, requests


def finished_text(page) -> str:
    page.wait_for_selector("#output[data-done='1'], #output[data-error='1']", timeout=180_000)
    assert page.get_attribute("#output", "data-error") is None, page.inner_text("#status")
    return page.evaluate("document.getElementById('output').textContent")


@needs_ort
@pytest.mark.parametrize("query, options", CASES, ids=["prime-temp", "top-k", "top-p"])
def test_autorun_page_is_byte_identical_to_the_cli(site, chromium, query, options):
    url, _ = site
    page, requests = open_page(chromium, url + "?" + urlencode({**query, "autorun": "1"}))
    try:
        text = finished_text(page)
    finally:
        page.close()
    assert text == cli_sample(options, query["seed"], query["length"])
    served = urlsplit(url).netloc
    assert requests and all(urlsplit(r).netloc == served for r in requests), requests
    # the page loaded the fp32 graph, the runtime and the sampler, each from this host
    paths = {urlsplit(r).path for r in requests}
    assert {"/model/model.onnx", "/onnxruntime-web/ort-wasm-simd-threaded.wasm", "/studio-sampler.js"} <= paths
    assert "/model/model.int8.onnx" not in paths


@needs_ort
def test_page_works_by_hand_and_reports_bad_parameters(site, chromium):
    url, _ = site
    page, requests = open_page(chromium, url + "?temp=0.5&seed=9")
    try:
        page.wait_for_function("document.getElementById('status').textContent === 'Ready.'", timeout=60_000)
        assert page.input_value("#temp") == "0.5" and page.input_value("#seed") == "9"
        page.fill("#prime", "JULIET:")
        page.fill("#length", "60")
        page.click("#generate")
        text = finished_text(page)
        assert text == cli_sample(["--prime", "JULIET:", "--temp", "0.5"], "9", "60")
        recipe = page.inner_text("#recipe")
        assert recipe.startswith("studio sample --model prose --prime JULIET: --temp 0.5")
        args = shlex.split(recipe)
        done = subprocess.run(
            [sys.executable, "-m", "studio", *args[1:]], capture_output=True, text=True, cwd=ROOT, timeout=300
        )
        assert done.returncode == 0 and done.stdout == text, recipe  # the recipe prints the page's text
        assert "characters in" in page.inner_text("#status")
        page.goto(url + "?autorun=1&temp=warm", timeout=60_000)
        page.wait_for_selector("#output[data-error='1']", timeout=60_000)
        assert page.inner_text("#status") == "error: temp=warm is not a number"
        page.goto(url + "?autorun=1&prime=%C3%A9t%C3%A9", timeout=60_000)
        page.wait_for_selector("#output[data-error='1']", timeout=60_000)
        assert "not in the model's vocabulary" in page.inner_text("#status")
    finally:
        page.close()
    assert all(urlsplit(r).netloc == urlsplit(url).netloc for r in requests)


@needs_ort
def test_export_writes_a_manifest_and_refuses_to_overwrite(tmp_path):
    out = tmp_path / "site"
    written = export_web("prose", out)
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["model"] == "prose" and manifest["graphs"]["fp32"] == "model/model.onnx"
    for name, entry in manifest["files"].items():
        assert (out / name).stat().st_size == entry["bytes"] == written.files[name]
    runner = CliRunner()
    again = runner.invoke(app, ["export-web", "prose", "--out", str(out)])
    assert again.exit_code == 1 and "is not empty" in again.output and "--force" in again.output
    assert len(again.output.strip().splitlines()) == 1
    forced = runner.invoke(app, ["export-web", "prose", "--out", str(out), "--force"])
    assert forced.exit_code == 0, forced.output
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    refused = runner.invoke(app, ["export-web", "prose", "--out", str(other), "--force"])
    assert refused.exit_code == 1 and "not a studio web export" in refused.output
    assert (other / "notes.txt").read_text() == "keep me"
    music = runner.invoke(app, ["export-web", "songs", "--out", str(tmp_path / "songs")])
    assert music.exit_code == 1 and "text models by characters" in music.output
    assert not (tmp_path / "songs").exists()
    assert not [p for p in tmp_path.iterdir() if ".partial-" in p.name]  # nothing half written
    nowhere = runner.invoke(app, ["export-web", "prose", "--out", "/proc/site"])  # no folder can be made there
    assert nowhere.exit_code == 1 and "cannot write in /proc (No such file or directory)" in nowhere.output
    assert len(nowhere.output.strip().splitlines()) == 1


def test_export_without_the_fetched_runtime_says_how_to_fetch_it(tmp_path, monkeypatch):
    monkeypatch.setattr("studio.webexport.VENDOR", tmp_path / "nothing")
    with pytest.raises(Exception, match="make install"):
        vendor_files()
    result = CliRunner().invoke(app, ["export-web", "prose", "--out", str(tmp_path / "site")])
    assert result.exit_code == 1 and "make install" in result.output
    assert not (tmp_path / "site").exists()


@needs_ort
@pytest.mark.parametrize(
    "model, query, options",
    [
        (
            "handwriting",
            {"text": "Hello world of pens", "seed": "4", "bias": "2", "width": "2.5", "color": "#aa0000"},
            [
                "--text",
                "Hello world of pens",
                "--page-width",
                "0",
                "--hand-per-line",
                "--bias",
                "2",
                "--stroke-width",
                "2.5",
                "--color",
                "#aa0000",
            ],
        ),
        ("doodle", {"seed": "3", "bias": "0.5"}, ["--bias", "0.5", "--stroke-width", "2"]),
    ],
)
def test_strokes_page_draws_the_clis_svg(tmp_path, chromium, model, query, options):
    folder = tmp_path / "site"
    export_web(model, folder)
    assert not (folder / "page.js").exists() and (folder / "studio-strokes.js").is_file()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/"
    try:
        page, requests = open_page(chromium, url + "?" + urlencode({**query, "autorun": "1"}))
        try:
            page.wait_for_selector("#output[data-done='1'], #output[data-error='1']", timeout=180_000)
            assert page.get_attribute("#output", "data-error") is None, page.inner_text("#status")
            svg = page.evaluate("window.studioRun.svg")
            assert page.inner_html("#output").count("<path") == svg.count("<path") > 0
            recipe = page.inner_text("#recipe")
        finally:
            page.close()
    finally:
        server.shutdown()
    out = tmp_path / "cli.svg"
    done = subprocess.run(
        [sys.executable, "-m", "studio", "sample", "--model", model, "--seed", query["seed"], "--precision", "fp32"]
        + options
        + ["--out", str(out)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert svg == out.read_text(encoding="utf-8")
    assert recipe.startswith(f"studio sample --model {model} --seed {query['seed']} --precision fp32")
    assert all(urlsplit(r).netloc == urlsplit(url).netloc for r in requests if not r.startswith(("data:", "blob:")))


@needs_ort
def test_int8_page_primes_the_one_step_static_graph(site, chromium):
    """The shipped prose int8 graph is static (QDQ) with a time axis of 1: the page reads
    that from the session and primes token by token instead of failing on a 6-token call."""
    url, folder = site
    card = json.loads((folder / "model" / "card.json").read_text(encoding="utf-8"))
    assert card["quantization"]["scheme"] == "static"
    query = {"prime": "ROMEO:", "seed": "5", "length": "40", "precision": "int8", "autorun": "1"}
    page, requests = open_page(chromium, url + "?" + urlencode(query))
    try:
        text = finished_text(page)
    finally:
        page.close()
    assert text.startswith("ROMEO:") and len(text) > len("ROMEO:") + 1
    assert "/model/model.int8.onnx" in {urlsplit(r).path for r in requests}
