"""The web studio end to end: a real server (`studio web`) on a free loopback port,
driven through ``gradio_client`` and through Debian's Chromium with Playwright.

One session builds three tiny bundles (text, music, handwriting) in one subprocess
while the server starts; the server finds them through ``$STUDIO_MODELS``.  Every
endpoint is called, every recipe is run through the CLI and must write the same bytes,
bad input must come back as an error while the server keeps serving, and 20
concurrent ``/write`` requests must all complete.  Screenshots go to
``test-artifacts/``.
"""

from __future__ import annotations

import json
import os
import shlex
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TEXT, MUSIC, HAND = "webtext", "websongs", "webhand"
SERVER_START_S = 120

CODE = '''# greet people
def greet(name, times=2):
    """Say hello (twice by default)."""
    for i in range(times):
        if name:
            print("Hello, " + name + "!")
        else:
            print('nobody [here]')
    return {"name": name, "said": times}

'''
PLAY = '''ROMEO: "But soft!" said he; what light through yonder window breaks?
JULIET: O Romeo, Romeo! wherefore art thou Romeo?
  Deny thy father and refuse thy name.

'''

# One process, one torch import: a char LSTM, a music LSTM and a Graves synthesis net,
# each trained for a few steps and exported to MODELS/<name>.
BUILD = r'''
import sys
from pathlib import Path
import mido
from studio.config import TrainConfig
from studio.training import run_training

work = Path(sys.argv[1])
models, runs = work / "models", work / "build-runs"
small = dict(hidden_size=16, layers=1, embedding_size=8, dropout=0.0)
config = TrainConfig(batch_size=4, seq_len=16, max_steps=3, eval_every=3, transpose=0)
# the text model learns just enough (60 steps) that the end-of-document token is rare
text_config = TrainConfig(batch_size=4, seq_len=16, max_steps=60, eval_every=60, learning_rate=1e-2,
                          warmup_steps=5)
run_training(corpus=work / "text", resume=None, name="%(text)s", domain="chars", domain_options={},
             model=small, config=text_config, stop_after=None, out=models / "%(text)s", quantize=None,
             export=True, runs_dir=runs, quiet=True)
midi = work / "midi"
for k in range(3):
    song = mido.MidiFile(ticks_per_beat=480)
    track = mido.MidiTrack()
    song.tracks.append(track)
    track.append(mido.MetaMessage("set_tempo", tempo=500000))
    for i in range(32):
        pitch = 60 + (i * (k + 2)) %% 12
        track.append(mido.Message("note_on", note=pitch, velocity=80, time=0))
        track.append(mido.Message("note_off", note=pitch, velocity=0, time=240))
    song.save(midi / f"piece{k}.mid")
run_training(corpus=midi, resume=None, name="%(music)s", domain="music", domain_options={},
             model=small, config=config, stop_after=None, out=models / "%(music)s", quantize=None,
             export=True, runs_dir=runs, quiet=True)
hand = TrainConfig(batch_size=4, max_steps=2, eval_every=2, val_sequences=8, seed=1)
run_training(corpus=Path(%(corpora)r) / "handwriting", resume=None, name="%(hand)s", domain="strokes",
             domain_options={"statistics_lines": 64}, model=dict(hidden_size=16, layers=1, mixtures=3),
             config=hand, stop_after=None, out=models / "%(hand)s", quantize=None, export=True,
             runs_dir=runs, quiet=True)
''' % {"text": TEXT, "music": MUSIC, "hand": HAND,
       "corpora": str(Path(__file__).resolve().parent.parent / "corpora")}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def studio_env(work: Path) -> dict:
    env = dict(os.environ)
    env.update(STUDIO_MODELS=str(work / "models"), GRADIO_ANALYTICS_ENABLED="False",
               HF_HUB_OFFLINE="1", MPLBACKEND="Agg", PYTHONPATH=str(ROOT),
               NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost",
               OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")  # tiny models: threads only contend
    return env


def run_cli(command: str, work: Path, cwd: Path) -> subprocess.CompletedProcess:
    """Run a recipe (``studio sample ...``) exactly as printed, through this Python."""
    args = shlex.split(command)
    assert args[:2] == ["studio", "sample"], command
    result = subprocess.run([sys.executable, "-m", "studio", *args[1:]], cwd=cwd,
                            env=studio_env(work), capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result


def source_digest() -> str:
    """Changes whenever the build script or any library source does."""
    import hashlib

    digest = hashlib.sha256(b"models+midi" + BUILD.encode() + PLAY.encode() + CODE.encode())
    for file in sorted((ROOT / "studio").rglob("*.py")):
        digest.update(file.read_bytes())
    return digest.hexdigest()[:16]


def build_bundles(work: Path, cache_root: Path) -> float:
    """Train and export the three bundles into ``work/models``, or copy them from an
    earlier session's cache when no source changed since; returns the seconds taken."""
    import shutil

    started = time.time()
    cache = cache_root / f"studio-web-bundles-{source_digest()}"
    if not (cache / "done").exists():
        build = subprocess.run([sys.executable, "-c", BUILD, str(work)], cwd=work,
                               env=studio_env(work), capture_output=True, text=True, timeout=900)
        assert build.returncode == 0, build.stderr[-3000:]
        shutil.rmtree(cache, ignore_errors=True)
        for folder in ("models", "midi"):
            shutil.copytree(work / folder, cache / folder)
        (cache / "done").touch()
    else:
        for folder in ("models", "midi"):
            shutil.copytree(cache / folder, work / folder, dirs_exist_ok=True)
    return time.time() - started


@pytest.fixture(scope="session")
def studio_server():
    """(base URL, work folder): the server starts while the bundles are being built.
    The folder is our own, not pytest's: concurrent pytest sessions prune each other's
    old basetemps, and the server's working folder must outlive every test here."""
    import shutil
    import tempfile

    work = Path(tempfile.mkdtemp(prefix="studio-web-test-"))
    # text/ for the bundles built here; corpora/text/ for the Train tab, which lists corpora by name
    for folder in (work / "text", work / "corpora" / "text"):
        folder.mkdir(parents=True)
        (folder / "play.txt").write_text(PLAY * 6)
        (folder / "code.py").write_text(CODE * 6)
    (work / "midi").mkdir()
    port = free_port()
    log = open(work / "server.log", "w")
    started = time.time()
    server = subprocess.Popen([sys.executable, "-m", "studio", "web", "--port", str(port)],
                              cwd=work, env=studio_env(work), stdout=log, stderr=subprocess.STDOUT)
    try:
        built = build_bundles(work, Path(tempfile.gettempdir()))
        url = f"http://127.0.0.1:{port}/"
        deadline = time.time() + SERVER_START_S
        while True:
            try:
                urllib.request.urlopen(url, timeout=2)
                break
            except OSError:
                assert server.poll() is None, (work / "server.log").read_text()[-3000:]
                assert time.time() < deadline, "the server did not start"
                time.sleep(0.3)
        print(f"\nbundles ready in {built:.1f} s, server up in {time.time() - started:.1f} s")
        yield url, work
    finally:
        server.terminate()
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(scope="session")
def client(studio_server):
    # generous timeouts: a busy CI machine may take seconds to accept a request
    return Client(studio_server[0], verbose=False, download_files=str(studio_server[1] / "downloads"),
                  httpx_kwargs={"timeout": 120})


def write_args(**changes) -> dict:
    args = dict(model=TEXT, prime="ROMEO:", temperature=0.9, top_k=20, top_p=0.95,
                repetition_penalty=1.0, beams=1, seed=7, length=80, stop="", view="auto",
                confidence=False)
    args.update(changes)
    return args


# --- endpoints against the CLI --------------------------------------------------------

def test_write_equals_cli_and_recipe_reproduces_the_file(client, studio_server, tmp_path):
    _, work = studio_server
    text, recipe, html, file, stats = client.predict(**write_args(), api_name="/write")
    assert text.startswith("ROMEO:") and len(text) > len("ROMEO:")
    assert recipe.startswith("studio sample --model webtext") and "--seed 7" in recipe
    assert recipe == ("studio sample --model webtext --temp 0.9 --top-k 20 --top-p 0.95 "
                      "--length 80 --seed 7 --prime ROMEO: --out webtext-seed7.txt")
    cli = run_cli(recipe + " --json", work, tmp_path)
    assert json.loads(cli.stdout)["text"] == text
    written = tmp_path / Path(file).name
    assert written.read_bytes() == Path(file).read_bytes() == text.encode()
    assert "tokens in" in stats and "<pre" in html


def test_write_streams_and_colours_confidence(client):
    # greedy: a barely trained model never picks the end-of-document token, so all 1500 come
    job = client.submit(**write_args(length=1500, temperature=0, confidence=True), api_name="/write")
    final = job.result(timeout=120)
    partial = [update[0] for update in job.outputs()[:-1]]
    assert len(partial) >= 3, "the text should arrive in several updates"
    assert all(final[0].startswith(piece) for piece in partial)
    tokens = int(final[4].split()[0])
    assert tokens >= 300 and len(final[0]) == len("ROMEO:") + tokens
    assert final[2].count('title="p = ') == tokens  # one coloured span per generated token


def test_write_beams_stop_strings_and_views(client):
    text, recipe, html, _, _ = client.predict(**write_args(beams=3, stop="\\n", view="code"),
                                              api_name="/write")
    assert "--beam 3" in recipe and "--stop" in recipe
    assert "\n" not in text[len("ROMEO:"):-1]
    assert html.startswith('<pre class="studio-code"')
    _, _, html, _, _ = client.predict(**write_args(prime="# Title\n\n", view="markdown"),
                                      api_name="/write")
    assert "<h1>Title</h1>" in html


def test_compose_recipe_writes_the_same_midi_wav_and_png(client, studio_server, tmp_path):
    _, work = studio_server
    summary, recipe, midi, wav, roll = client.predict(
        model=MUSIC, primer=None, tempo=100, bars=2, key="C major", temperature=1.0, beams=1,
        seed=3, api_name="/compose")
    assert "bpm" in summary and "--bars 2" in recipe and "--key 'C major'" in recipe
    assert Path(midi).read_bytes()[:4] == b"MThd"
    run_cli(recipe, work, tmp_path)
    for served in (midi, wav, roll):
        assert (tmp_path / Path(served).name).read_bytes() == Path(served).read_bytes(), served


def test_compose_continues_an_uploaded_primer(client, studio_server, tmp_path):
    _, work = studio_server
    primer = work / "midi" / "piece1.mid"
    summary, recipe, midi, _, _ = client.predict(
        model=MUSIC, primer=handle_file(str(primer)), tempo=0, bars=3, key="(any)",
        temperature=0.8, beams=1, seed=5, api_name="/compose")
    assert "--prime-file" in recipe and "--tempo" not in recipe
    run_cli(recipe.replace(" --wav --piano-roll", ""), work, tmp_path)
    assert (tmp_path / Path(midi).name).read_bytes() == Path(midi).read_bytes()


def test_handwrite_recipe_writes_the_same_svg(client, studio_server, tmp_path):
    _, work = studio_server
    summary, recipes, svg, png, gif, files = client.predict(
        model=HAND, text="Hi there", style="0", bias=1.5, seed=2, stroke_width=2.5,
        color="rgb(200, 30, 30)", api_name="/handwrite")
    assert "Hi there" in summary and svg.startswith("<svg")
    svg_recipe = recipes.splitlines()[0]
    assert "--style 0" in svg_recipe and "--color '#c81e1e'" in svg_recipe
    run_cli(svg_recipe, work, tmp_path)
    served = next(Path(f) for f in files if f.endswith(".svg"))
    assert (tmp_path / served.name).read_text() == svg == served.read_text()
    assert Path(png).read_bytes()[:4] == b"\x89PNG" and Path(gif).read_bytes()[:3] == b"GIF"


def test_inspect_ranks_cells_for_text_features(client):
    html, ranking, count = client.predict(model=TEXT, text=CODE, cell=5, api_name="/inspect")
    assert count == 32  # c and h of one layer of 16 units
    assert "unit 5" in html and html.count("<span") >= len(CODE) - 1
    features = {row[0] for row in ranking["data"]}
    assert {"inside quotes", "line length so far", "indentation"} <= features


def test_models_lists_cards(client):
    table = client.predict(api_name="/models")
    rows = {row[0]: row for row in table["data"]}
    assert {TEXT, MUSIC, HAND} <= set(rows)
    assert rows[TEXT][1] == "chars" and rows[HAND][6] == "nats/point"
    card = client.predict(model=HAND, api_name="/model_card")
    assert card["domain"]["name"] == "strokes" and card["styles"].endswith("items]")


# --- bad input ----------------------------------------------------------------------

def test_bad_input_is_an_error_and_the_server_keeps_serving(client, studio_server, tmp_path):
    cases = [
        (dict(api_name="/write", **write_args(prime="ROMEO: ~§~")), "not in the model's vocabulary"),
        (dict(api_name="/write", **write_args(model="no-such-model")), "not found"),
        (dict(api_name="/write", **write_args(top_p=0)), "minimum value"),
        (dict(api_name="/write", **write_args(model=MUSIC)), "text model"),
        (dict(api_name="/handwrite", model=HAND, text="ö ü", style="none", bias=1.0, seed=1,
              stroke_width=2.0, color="#000000"), "cannot write"),
        (dict(api_name="/inspect", model=TEXT, text="", cell=0), "give some text"),
    ]
    corrupt = tmp_path / "corrupt.mid"
    corrupt.write_bytes(b"MThd\x00\x00\x00\x06 not really a MIDI file")
    cases.append((dict(api_name="/compose", model=MUSIC, primer=handle_file(str(corrupt)), tempo=100,
                       bars=2, key="(any)", temperature=1.0, beams=1, seed=1), "cannot read"))
    cases.append((dict(api_name="/compose", model=MUSIC, primer=None, tempo=100, bars=2,
                       key="H minor", temperature=1.0, beams=1, seed=1), "unknown key"))
    for kwargs, message in cases:
        with pytest.raises(AppError) as caught:
            client.predict(**kwargs)
        assert message in str(caught.value), (kwargs, str(caught.value))
        assert "Traceback" not in str(caught.value)
    huge = tmp_path / "huge.mid"
    huge.write_bytes(b"MThd" + b"\x00" * (6 * 1024 * 1024))  # over the 5 MB upload limit
    with pytest.raises(Exception):
        client.predict(model=MUSIC, primer=handle_file(str(huge)), tempo=100, bars=2, key="(any)",
                       temperature=1.0, beams=1, seed=1, api_name="/compose")
    text, *_ = client.predict(**write_args(length=10), api_name="/write")
    assert text.startswith("ROMEO:")


# --- load ---------------------------------------------------------------------------

def test_twenty_concurrent_writes_complete(client):
    started = time.time()
    jobs = [client.submit(**write_args(seed=seed % 5, length=120), api_name="/write")
            for seed in range(20)]  # 20 requests in the queue at once, 4 running at a time
    texts = [job.result(timeout=300)[0] for job in jobs]
    elapsed = time.time() - started
    assert all(t.startswith("ROMEO:") and len(t) > len("ROMEO:") for t in texts)
    for seed in range(5):  # identical settings, identical text, however busy the server is
        assert len({texts[i] for i in range(seed, 20, 5)}) == 1
    print(f"\n20 concurrent /write requests (up to 120 tokens each): {elapsed:.1f} s")


# --- training -----------------------------------------------------------------------

def test_train_exports_a_model_that_the_pickers_offer(client, studio_server):
    _, work = studio_server
    status, plot, log, command = client.predict(
        corpus="(uploaded files)", uploads=[handle_file(str(work / "text" / "play.txt"))],
        name="fresh", domain="chars", hidden_size=16, layers=1, seq_len=16, batch_size=4,
        max_steps=4, max_minutes=0, eval_every=2, api_name="/train")
    assert "done, exported" in status, (status, log)
    assert command.startswith("studio train ") and "--max-steps 4" in command
    assert len(plot["data"]) >= 4  # train (and validation) losses, step by step
    names = [row[0] for row in client.predict(api_name="/models")["data"]]
    assert "fresh" in names
    text, *_ = client.predict(**write_args(model="fresh", prime="ROMEO", length=20), api_name="/write")
    assert text.startswith("ROMEO")
    with pytest.raises(AppError, match="exists already"):
        client.predict(corpus="text", uploads=None, name="fresh", domain="auto",
                       hidden_size=16, layers=1, seq_len=16, batch_size=4, max_steps=4,
                       max_minutes=0, eval_every=2, api_name="/train")


def test_training_can_be_cancelled(client, studio_server):
    _, work = studio_server
    job = client.submit(corpus="text", uploads=None, name="long", domain="auto",
                        hidden_size=16, layers=1, seq_len=16, batch_size=4, max_steps=100_000,
                        max_minutes=0, eval_every=50, api_name="/train")
    deadline = time.time() + 60
    while not job.outputs() and time.time() < deadline:
        time.sleep(0.2)
    assert job.outputs(), "the training job never reported progress"
    assert client.predict(api_name="/cancel_training") == "cancelled long"
    status = job.result(timeout=60)[0]
    assert "cancelled" in status
    assert not (work / "export" / "long").exists()


# --- a real browser -----------------------------------------------------------------

@pytest.fixture(scope="session")
def browser_page(studio_server):
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (`make install` installs it)")
    sync_api = pytest.importorskip("playwright.sync_api")
    requests: list[str] = []
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1000}, accept_downloads=True)
        page.on("request", lambda request: requests.append(request.url))
        page.goto(studio_server[0], timeout=120_000)
        page.wait_for_selector("#write-button", timeout=120_000)
        yield page, requests
        browser.close()


def textbox(page, elem_id: str):
    return page.locator(f"#{elem_id} textarea, #{elem_id} input").first


def choose(page, elem_id: str, option: str) -> None:
    """Pick ``option`` in a Gradio dropdown (shipped bundles may sit beside ours)."""
    page.wait_for_function(f"document.querySelector('#{elem_id} input')?.value", timeout=60_000)
    page.click(f"#{elem_id} input")
    page.get_by_role("option", name=option, exact=True).click()
    assert textbox(page, elem_id).input_value() == option


# Records every distinct value of a textarea, from inside the page, as it changes.
WATCH = """([selector, key]) => {
    window[key] = [];
    const timer = setInterval(() => {
        const value = document.querySelector(selector)?.value;
        if (value && window[key].at(-1) !== value) window[key].push(value);
    }, 10);
    window[key + '_stop'] = () => clearInterval(timer);
}"""


def test_browser_write_streams_text_and_colours_confidence(browser_page):
    page, _ = browser_page
    ARTIFACTS.mkdir(exist_ok=True)
    choose(page, "write-model", TEXT)
    textbox(page, "write-prime").fill("JULIET:")
    # greedy and long: the tiny model takes a while and never ends the document early
    page.locator("#write-temperature input[type=number]").fill("0")
    page.locator("#write-length input[type=number]").fill("2000")
    page.locator("#write-length input[type=number]").press("Tab")
    page.evaluate(WATCH, ["#write-text textarea", "seen"])
    page.click("#write-button")
    page.wait_for_function("document.querySelector('#write-recipe textarea')?.value.length > 0",
                           timeout=120_000)
    final = textbox(page, "write-text").input_value()
    seen = page.evaluate("window.seen_stop(), window.seen")
    assert final.startswith("JULIET:") and len(final) == len("JULIET:") + 2000
    streamed = [value for value in seen if value != final]
    # the page showed partial text before the end (a fast page may merge many updates)
    assert streamed and all(final.startswith(value) for value in streamed), \
        "the text should arrive piece by piece"

    page.locator("#write-temperature input[type=number]").fill("0.8")
    page.locator("#write-length input[type=number]").fill("300")
    page.locator("#write-length input[type=number]").press("Tab")
    page.locator("#write-confidence input").check()
    page.click("#write-button")
    page.wait_for_function(
        "document.querySelector('#write-recipe textarea')?.value.includes('--temp 0.8')",
        timeout=120_000)
    page.wait_for_selector("#write-view .studio-confidence span[title]", timeout=30_000)
    recipe = textbox(page, "write-recipe").input_value()
    assert recipe.startswith("studio sample --model webtext") and "--prime JULIET:" in recipe
    page.screenshot(path=str(ARTIFACTS / "web-write.png"), full_page=True)


def test_browser_compose_and_download_midi(browser_page):
    page, _ = browser_page
    page.get_by_role("tab", name="Compose").click()
    choose(page, "compose-model", MUSIC)
    page.click("#compose-button")
    page.wait_for_function("document.querySelector('#compose-recipe textarea')?.value.length > 0",
                           timeout=120_000)
    link = page.locator("#compose-midi a").first
    with page.expect_download() as download:
        link.click()
    target = ARTIFACTS / "web-compose.mid"
    download.value.save_as(target)
    assert target.read_bytes()[:4] == b"MThd"
    page.wait_for_function("document.querySelector('#compose-roll img')?.naturalWidth > 0",
                           timeout=30_000)
    page.screenshot(path=str(ARTIFACTS / "web-compose.png"), full_page=True)


def test_browser_handwrite(browser_page):
    page, _ = browser_page
    page.get_by_role("tab", name="Handwrite").click()
    choose(page, "handwrite-model", HAND)
    textbox(page, "handwrite-text").fill("Hello web")
    page.click("#handwrite-button")
    page.wait_for_selector("#handwrite-svg svg path", timeout=60_000)
    page.wait_for_function("document.querySelector('#handwrite-gif img')?.naturalWidth > 0",
                           timeout=30_000)
    assert "Hello web" in textbox(page, "handwrite-summary").input_value()
    page.screenshot(path=str(ARTIFACTS / "web-handwrite.png"), full_page=True)


def test_browser_look_inside_and_no_outside_requests(browser_page, studio_server):
    page, requests = browser_page
    page.get_by_role("tab", name="Look inside").click()
    choose(page, "inspect-model", TEXT)
    page.click("#inspect-button")
    page.wait_for_selector("#inspect-html .studio-cells span", timeout=60_000)
    page.screenshot(path=str(ARTIFACTS / "web-inspect.png"), full_page=True)
    origin = studio_server[0].rstrip("/")
    outside = [url for url in requests
               if not url.startswith((origin, "data:", "blob:"))]
    assert not outside, f"requests left the machine: {outside[:5]}"
