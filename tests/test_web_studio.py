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
import re
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

from studio.webexport import CHROMIUM, CHROMIUM_ARGS  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
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
PLAY = """ROMEO: "But soft!" said he; what light through yonder window breaks?
JULIET: O Romeo, Romeo! wherefore art thou Romeo?
  Deny thy father and refuse thy name.

"""

# One process, one torch import: a char LSTM, a music LSTM and a Graves synthesis net,
# each trained for a few steps and exported to MODELS/<name>.
BUILD = r"""
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
""" % {"text": TEXT, "music": MUSIC, "hand": HAND, "corpora": str(Path(__file__).resolve().parent.parent / "corpora")}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def studio_env(work: Path) -> dict:
    env = dict(os.environ)
    env.update(
        STUDIO_MODELS=str(work / "models"),
        GRADIO_ANALYTICS_ENABLED="False",
        HF_HUB_OFFLINE="1",
        MPLBACKEND="Agg",
        PYTHONPATH=str(ROOT),
        NO_PROXY="127.0.0.1,localhost",
        no_proxy="127.0.0.1,localhost",
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
    )  # tiny models: threads only contend
    return env


def run_cli(command: str, work: Path, cwd: Path) -> subprocess.CompletedProcess:
    """Run a recipe (``studio sample ...``) exactly as printed, through this Python."""
    args = shlex.split(command)
    assert args[:2] == ["studio", "sample"], command
    result = subprocess.run(
        [sys.executable, "-m", "studio", *args[1:]],
        cwd=cwd,
        env=studio_env(work),
        capture_output=True,
        text=True,
        timeout=120,
    )
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
        build = subprocess.run(
            [sys.executable, "-c", BUILD, str(work)],
            cwd=work,
            env=studio_env(work),
            capture_output=True,
            text=True,
            timeout=900,
        )
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
    log = open(work / "server.log", "w")  # noqa: SIM115 (the server writes to it until the fixture ends)
    started = time.time()
    server = subprocess.Popen(
        [sys.executable, "-m", "studio", "web", "--port", str(port)],
        cwd=work,
        env=studio_env(work),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
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
    return Client(
        studio_server[0],
        verbose=False,
        download_files=str(studio_server[1] / "downloads"),
        httpx_kwargs={"timeout": 120},
    )


def write_args(**changes) -> dict:
    args = dict(
        model=TEXT,
        prime="ROMEO:",
        temperature=0.9,
        top_k=20,
        top_p=0.95,
        repetition_penalty=1.0,
        beams=1,
        seed=7,
        length=80,
        stop="",
        view="auto",
        confidence=False,
    )
    args.update(changes)
    return args


# --- endpoints against the CLI --------------------------------------------------------


def test_write_equals_cli_and_recipe_reproduces_the_file(client, studio_server, tmp_path):
    _, work = studio_server
    text, recipe, html, file, stats = client.predict(**write_args(), api_name="/write")
    assert text.startswith("ROMEO:") and len(text) > len("ROMEO:")
    assert recipe.startswith("studio sample --model webtext") and "--seed 7" in recipe
    assert recipe == (
        "studio sample --model webtext --temp 0.9 --top-k 20 --top-p 0.95 "
        "--length 80 --seed 7 --prime ROMEO: --out webtext-seed7.txt"
    )
    cli = run_cli(recipe + " --json", work, tmp_path)
    assert json.loads(cli.stdout)["text"] == text
    written = tmp_path / Path(file).name
    assert written.read_bytes() == Path(file).read_bytes() == text.encode()
    assert "tokens in" in stats and "<pre" in html


def test_write_keeps_the_likeliest_candidate_as_the_cli_does(client, studio_server, tmp_path):
    _, work = studio_server
    text, recipe, *_ = client.predict(**write_args(best_of=3), api_name="/write")
    assert "--best-of 3" in recipe
    cli = run_cli(recipe + " --json", work, tmp_path)
    line = json.loads(cli.stdout)
    assert line["text"] == text and line["best_of"] == 3


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
    text, recipe, html, _, _ = client.predict(**write_args(beams=3, stop="\\n", view="code"), api_name="/write")
    assert "--beam 3" in recipe and "--stop" in recipe
    assert "\n" not in text[len("ROMEO:") : -1]
    assert html.startswith('<pre class="studio-code"')
    _, _, html, _, _ = client.predict(**write_args(prime="# Title\n\n", view="markdown"), api_name="/write")
    assert "<h1>Title</h1>" in html


def test_compose_recipe_writes_the_same_midi_wav_and_png(client, studio_server, tmp_path):
    _, work = studio_server
    summary, recipe, midi, wav, roll = client.predict(
        model=MUSIC,
        primer=None,
        tempo=100,
        bars=2,
        key="C major",
        temperature=1.0,
        beams=1,
        seed=3,
        metre="2/2",
        api_name="/compose",
    )
    assert "bpm" in summary and "--bars 2" in recipe and "--key 'C major'" in recipe
    assert "--metre 2/2" in recipe and "2/2" in summary  # the corpus's 4/4 bars, named as asked
    assert Path(midi).read_bytes()[:4] == b"MThd"
    run_cli(recipe, work, tmp_path)
    for served in (midi, wav, roll):
        assert (tmp_path / Path(served).name).read_bytes() == Path(served).read_bytes(), served


def test_compose_keeps_the_likeliest_of_its_candidates_as_the_cli_does(client, studio_server, tmp_path):
    _, work = studio_server
    summary, recipe, midi, _, _ = client.predict(model=MUSIC, bars=2, seed=5, best_of=3, api_name="/compose")
    assert "--best-of 3" in recipe and "bpm" in summary
    run_cli(recipe, work, tmp_path)
    assert (tmp_path / Path(midi).name).read_bytes() == Path(midi).read_bytes()


def test_compose_pitch_temperature_and_lockstep_are_in_the_recipe_and_give_the_cli_piece(
    client, studio_server, tmp_path
):
    _, work = studio_server
    _, recipe, midi, _, _ = client.predict(
        model=MUSIC, bars=2, seed=6, pitch_temp=0.7, lockstep=True, api_name="/compose"
    )
    assert "--pitch-temp 0.7" in recipe and "--lockstep" in recipe
    run_cli(recipe, work, tmp_path)
    assert (tmp_path / Path(midi).name).read_bytes() == Path(midi).read_bytes()
    with pytest.raises(AppError, match="pitch temperature must be above 0"):
        client.predict(model=MUSIC, bars=2, seed=6, pitch_temp=0, api_name="/compose")


def test_compose_continues_an_uploaded_primer(client, studio_server, tmp_path):
    _, work = studio_server
    primer = work / "midi" / "piece1.mid"
    summary, recipe, midi, _, _ = client.predict(
        model=MUSIC,
        primer=handle_file(str(primer)),
        tempo=0,
        bars=3,
        key="(any)",
        temperature=0.8,
        beams=1,
        seed=5,
        api_name="/compose",
    )
    # the recipe names the primer as the user has it, not the server's copy
    assert "--prime-file piece1.mid" in recipe and "--tempo" not in recipe
    (tmp_path / "piece1.mid").write_bytes(primer.read_bytes())
    run_cli(recipe.replace(" --wav --piano-roll", ""), work, tmp_path)
    assert (tmp_path / Path(midi).name).read_bytes() == Path(midi).read_bytes()


def test_handwrite_recipe_writes_the_same_svg(client, studio_server, tmp_path):
    _, work = studio_server
    summary, recipes, svg, png, gif, files = client.predict(
        model=HAND,
        text="Hi there",
        style="0",
        bias=1.5,
        seed=2,
        stroke_width=2.5,
        color="rgb(200, 30, 30)",
        api_name="/handwrite",
    )
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
    assert rows[TEXT][1] == "chars" and rows[TEXT][2].endswith("bits per character")
    assert rows[MUSIC][2].endswith("bits per event") and rows[HAND][2].endswith("nats per point")
    card = client.predict(model=HAND, api_name="/model_card")
    assert card["domain"]["name"] == "strokes" and card["styles"].endswith("items]")


# --- bad input ----------------------------------------------------------------------


def test_bad_input_is_an_error_and_the_server_keeps_serving(client, studio_server, tmp_path):
    cases = [
        (dict(api_name="/write", **write_args(prime="ROMEO: ~§~")), "not in the model's vocabulary"),
        (dict(api_name="/write", **write_args(model="no-such-model")), "not found"),
        (dict(api_name="/write", **write_args(top_p=0)), "top-p must be in (0, 1]"),
        (dict(api_name="/write", **write_args(model=MUSIC)), "text model"),
        (
            dict(
                api_name="/handwrite",
                model=HAND,
                text="ö ü",
                style="none",
                bias=1.0,
                seed=1,
                stroke_width=2.0,
                color="#000000",
            ),
            "cannot write",
        ),
        (dict(api_name="/inspect", model=TEXT, text="", cell=0), "give some text"),
    ]
    corrupt = tmp_path / "corrupt.mid"
    corrupt.write_bytes(b"MThd\x00\x00\x00\x06 not really a MIDI file")
    cases.append(
        (
            dict(
                api_name="/compose",
                model=MUSIC,
                primer=handle_file(str(corrupt)),
                tempo=100,
                bars=2,
                key="(any)",
                temperature=1.0,
                beams=1,
                seed=1,
            ),
            "cannot read corrupt.mid",
        )
    )
    cases.append(
        (
            dict(
                api_name="/compose",
                model=MUSIC,
                primer=None,
                tempo=100,
                bars=2,
                key="H minor",
                temperature=1.0,
                beams=1,
                seed=1,
            ),
            "unknown key",
        )
    )
    for kwargs, message in cases:
        with pytest.raises(AppError) as caught:
            client.predict(**kwargs)
        assert message in str(caught.value), (kwargs, str(caught.value))
        assert "Traceback" not in str(caught.value)
    huge = tmp_path / "huge.mid"
    huge.write_bytes(b"MThd" + b"\x00" * (6 * 1024 * 1024))  # over the 5 MB upload limit
    with pytest.raises(Exception):  # noqa: B017 (gradio_client raises its own types for a refused upload)
        client.predict(
            model=MUSIC,
            primer=handle_file(str(huge)),
            tempo=100,
            bars=2,
            key="(any)",
            temperature=1.0,
            beams=1,
            seed=1,
            api_name="/compose",
        )
    text, *_ = client.predict(**write_args(length=10), api_name="/write")
    assert text.startswith("ROMEO:")


def test_every_output_has_a_name_and_the_ui_defaults_hold(client):
    endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    for name, endpoint in endpoints.items():
        for output in endpoint["returns"]:
            assert not re.fullmatch(r"value_\d+", output["label"]), (name, output)
    defaults = {
        name: {
            p["parameter_name"]: (p["parameter_has_default"], p["parameter_default"]) for p in endpoint["parameters"]
        }
        for name, endpoint in endpoints.items()
    }
    assert defaults["/write"]["prime"] == (True, "") and defaults["/write"]["stop"] == (True, "")
    assert defaults["/compose"]["primer"] == (True, None)
    text, recipe, *_ = client.predict(model=TEXT, api_name="/write")  # everything else as the page has it
    assert "--length 300" in recipe and "--seed 1" in recipe and text


OUT_OF_RANGE = [
    ("/write", write_args(temperature=-3), "temperature must be 0 (greedy) to 100 (got -3.0)"),
    ("/write", write_args(top_p=0), "top-p must be in (0, 1] (got 0.0)"),
    ("/write", write_args(beams=0), "beams must be at least 1 (got 0)"),
    ("/write", write_args(beams=9), "beams must be 1 to 8 here (got 9)"),
    ("/write", write_args(length=99_999_999), "length is at most 2,000 tokens here (got 99,999,999)"),
    ("/write", write_args(length=2.5), "length must be a whole number"),
    ("/write", write_args(best_of=17), "candidates (best of) must be 1 to 16 here (got 17)"),
    ("/compose", dict(model=MUSIC, bars=65), "bars must be 1 to 64 here (got 65)"),
    ("/compose", dict(model=MUSIC, tempo=500), "tempo must be 10-400 bpm (got 500.0)"),
    ("/compose", dict(model=MUSIC, beams=0), "beams must be at least 1 (got 0)"),
    ("/compose", dict(model=MUSIC, best_of=17), "candidates (best of) must be 1 to 16 here (got 17)"),
    ("/compose", dict(model=MUSIC, best_of=2, beams=2), "--best-of draws several samples and keeps the likeliest"),
    ("/handwrite", dict(model=HAND, bias=-3), "bias must be 0 to 100 (got -3.0)"),
    ("/handwrite", dict(model=HAND, text=""), "type the text to write"),
    ("/handwrite", dict(model=HAND, text="a" * 201), "at most 200 characters here (got 201)"),
    ("/inspect", dict(model=TEXT, text=CODE, cell=-1), "cell must be 0 to 31"),
    ("/train", dict(corpus="text", name="big", hidden_size=5000), "hidden size must be 16 to 1024 here (got 5000)"),
    ("/train", dict(corpus="text", name="deep", layers=0), "layers must be 1 to 3 here (got 0)"),
]


def test_out_of_range_numbers_are_refused_in_every_tab(client, studio_server):
    _, work = studio_server
    log_before = (work / "server.log").read_text()
    for api_name, kwargs, message in OUT_OF_RANGE:
        with pytest.raises(AppError) as caught:
            client.predict(**kwargs, api_name=api_name)
        assert message in str(caught.value), (api_name, kwargs, str(caught.value))
    # one line on the server per refused request, and no traceback for any of them
    log = (work / "server.log").read_text()[len(log_before) :]
    assert log.count(" refused: ") == len(OUT_OF_RANGE) and "Traceback" not in log, log[-3000:]


def test_uploads_are_named_as_the_user_named_them(client, tmp_path):
    empty = tmp_path / "my empty song.mid"
    empty.write_bytes(b"")
    with pytest.raises(AppError) as caught:
        client.predict(model=MUSIC, primer=handle_file(str(empty)), api_name="/compose")
    assert "my empty song.mid" in str(caught.value)
    assert "studio-web" not in str(caught.value) and "/tmp" not in str(caught.value)
    nothing = tmp_path / "notes.txt"
    nothing.write_text("")
    with pytest.raises(AppError, match="nothing to train on: notes.txt is empty"):
        client.predict(
            corpus="(uploaded files)", uploads=[handle_file(str(nothing))], name="empty-upload", api_name="/train"
        )


def test_a_primer_in_any_format_the_message_names_is_accepted(client, studio_server, tmp_path):
    tune = tmp_path / "tune.abc"
    tune.write_text("X:1\nT:Scale\nM:4/4\nL:1/4\nK:C\nC D E F | G A B c |\n")
    summary, recipe, midi, _, _ = client.predict(
        model=MUSIC, primer=handle_file(str(tune)), tempo=100, bars=2, seed=1, api_name="/compose"
    )
    assert "--prime-file tune.abc" in recipe and Path(midi).read_bytes()[:4] == b"MThd"


def test_model_previews_explain_the_figure_and_show_a_sample(client):
    about, text, image, recipe = client.predict(model=TEXT, api_name="/model_preview")
    assert "bits per character" in about and "equally likely" in about
    assert text and image is None and recipe.startswith(f"studio sample --model {TEXT}")
    about, summary, image, recipe = client.predict(model=HAND, api_name="/model_preview")
    assert "nats per point" in about and "below zero" in about
    assert Path(image).read_bytes()[:4] == b"\x89PNG" and "--text 'Sequence Studio'" in recipe


# --- load ---------------------------------------------------------------------------


def test_twenty_concurrent_writes_complete(client):
    started = time.time()
    jobs = [
        client.submit(**write_args(seed=seed % 5, length=120), api_name="/write") for seed in range(20)
    ]  # 20 requests in the queue at once, 4 running at a time
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
        corpus="(uploaded files)",
        uploads=[handle_file(str(work / "text" / "play.txt"))],
        name="fresh",
        domain="chars",
        hidden_size=16,
        layers=1,
        seq_len=16,
        batch_size=4,
        max_steps=4,
        max_minutes=0,
        eval_every=2,
        api_name="/train",
    )
    assert "done, exported" in status, (status, log)
    assert command.startswith("studio train ") and "--max-steps 4" in command
    assert len(plot["data"]) >= 4  # train (and validation) losses, step by step
    names = [row[0] for row in client.predict(api_name="/models")["data"]]
    assert "fresh" in names
    text, *_ = client.predict(**write_args(model="fresh", prime="ROMEO", length=20), api_name="/write")
    assert text.startswith("ROMEO")
    with pytest.raises(AppError, match="exists already"):
        client.predict(
            corpus="text",
            uploads=None,
            name="fresh",
            domain="auto",
            hidden_size=16,
            layers=1,
            seq_len=16,
            batch_size=4,
            max_steps=4,
            max_minutes=0,
            eval_every=2,
            api_name="/train",
        )


def test_training_can_be_cancelled(client, studio_server):
    _, work = studio_server
    job = client.submit(
        corpus="text",
        uploads=None,
        name="long",
        domain="auto",
        hidden_size=16,
        layers=1,
        seq_len=16,
        batch_size=4,
        max_steps=100_000,
        max_minutes=0,
        eval_every=50,
        api_name="/train",
    )
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
def chromium():
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (`make install` installs it)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def browser_page(chromium, studio_server):
    requests: list[str] = []
    page = chromium.new_page(viewport={"width": 1280, "height": 1000}, accept_downloads=True)
    page.on("request", lambda request: requests.append(request.url))
    page.goto(studio_server[0], timeout=120_000)
    page.wait_for_selector("#write-button", timeout=120_000)
    yield page, requests
    page.close()


@pytest.fixture(scope="session")
def laptop_page(chromium, studio_server):
    """The studio as a laptop shows it (1366 x 900), in a browser session of its own."""
    ARTIFACTS.mkdir(exist_ok=True)
    page = chromium.new_page(viewport={"width": 1366, "height": 900}, accept_downloads=True)
    page.goto(studio_server[0], timeout=120_000)
    page.wait_for_selector("#write-button", timeout=120_000)
    yield page
    page.close()


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
    page.wait_for_function("document.querySelector('#write-recipe textarea')?.value.length > 0", timeout=120_000)
    final = textbox(page, "write-text").input_value()
    seen = page.evaluate("window.seen_stop(), window.seen")
    assert final.startswith("JULIET:") and len(final) == len("JULIET:") + 2000
    streamed = [value for value in seen if value != final]
    # the page showed partial text before the end (a fast page may merge many updates)
    assert streamed and all(final.startswith(value) for value in streamed), "the text should arrive piece by piece"

    page.locator("#write-temperature input[type=number]").fill("0.8")
    page.locator("#write-length input[type=number]").fill("300")
    page.locator("#write-length input[type=number]").press("Tab")
    page.locator("#write-confidence input").check()
    page.click("#write-button")
    page.wait_for_function(
        "document.querySelector('#write-recipe textarea')?.value.includes('--temp 0.8')", timeout=120_000
    )
    page.wait_for_selector("#write-view .studio-confidence", timeout=30_000)
    assert page.locator("#write-view .studio-confidence span[title]").count() > 0
    recipe = textbox(page, "write-recipe").input_value()
    assert recipe.startswith("studio sample --model webtext") and "--prime JULIET:" in recipe
    page.screenshot(path=str(ARTIFACTS / "web-write.png"), full_page=True)


def test_browser_compose_and_download_midi(browser_page):
    page, _ = browser_page
    page.get_by_role("tab", name="Compose").click()
    choose(page, "compose-model", MUSIC)
    page.click("#compose-button")
    page.wait_for_function("document.querySelector('#compose-recipe textarea')?.value.length > 0", timeout=120_000)
    link = page.locator("#compose-midi a").first
    with page.expect_download() as download:
        link.click()
    target = ARTIFACTS / "web-compose.mid"
    download.value.save_as(target)
    assert target.read_bytes()[:4] == b"MThd"
    page.wait_for_function("document.querySelector('#compose-roll img')?.naturalWidth > 0", timeout=30_000)
    page.screenshot(path=str(ARTIFACTS / "web-compose.png"), full_page=True)


def test_browser_handwrite(browser_page):
    page, _ = browser_page
    page.get_by_role("tab", name="Handwrite").click()
    choose(page, "handwrite-model", HAND)
    textbox(page, "handwrite-text").fill("Hello web")
    page.click("#handwrite-button")
    page.wait_for_selector("#handwrite-svg svg path", timeout=60_000)
    page.wait_for_function("document.querySelector('#handwrite-gif img')?.naturalWidth > 0", timeout=30_000)
    assert "Hello web" in textbox(page, "handwrite-summary").input_value()
    page.screenshot(path=str(ARTIFACTS / "web-handwrite.png"), full_page=True)


# Where each preview's label and buttons sit against its picture (all client rectangles).
PREVIEW_BOXES = """(id) => {
    const root = document.querySelector('#' + id);
    const picture = root.querySelector('img').getBoundingClientRect();
    const overlays = [...root.querySelectorAll('label, .icon-button-wrapper')].map(e => e.getBoundingClientRect());
    return {picture: [picture.top, picture.bottom], overlays: overlays.map(r => [r.top, r.bottom]),
            natural: [root.querySelector('img').naturalWidth, root.querySelector('img').naturalHeight],
            shown: [picture.width, picture.height]};
}"""


def draw(page, canvas: str, strokes) -> None:
    """Draw ``strokes`` (canvas-relative points) with the mouse: press, move, release."""
    box = page.locator(canvas).bounding_box()
    for stroke in strokes:
        page.mouse.move(box["x"] + stroke[0][0], box["y"] + stroke[0][1])
        page.mouse.down()
        for x, y in stroke[1:]:
            page.mouse.move(box["x"] + x, box["y"] + y, steps=3)
        page.mouse.up()


def test_browser_drawing_pad_writes_in_the_users_hand(browser_page, studio_server, tmp_path):
    """Mouse strokes on the pad plus "What you wrote" make a drawing primed with that
    hand; its recipe names the saved strokes, and run through the CLI on the same
    strokes it draws the same paths.  The previews show the whole drawing: nothing
    overlays the picture, and it keeps its own proportions."""
    page, _ = browser_page
    _, work = studio_server
    page.get_by_role("tab", name="Handwrite").click()
    names = page.evaluate("() => [...document.querySelectorAll('#handwrite-model input')].map(e => e.value)")
    model = "handwriting" if (ROOT / "export" / "handwriting" / "card.json").is_file() else HAND
    choose(page, "handwrite-model", model)
    page.wait_for_selector("#handwrite-pad-canvas", state="visible", timeout=30_000)
    hi = [
        [(30, 30), (30, 100)],
        [(30, 100), (30, 75), (40, 65), (55, 68), (60, 80), (60, 100)],
        [(80, 65), (80, 100)],
        [(80, 50), (81, 51)],
    ]
    draw(page, "#handwrite-pad-canvas", hi[:1])
    page.click("#handwrite-pad-clear")
    assert textbox(page, "handwrite-pad-strokes").input_value() == ""
    draw(page, "#handwrite-pad-canvas", hi)
    strokes = json.loads(textbox(page, "handwrite-pad-strokes").input_value())
    assert len(strokes) == 4 and all(len(stroke) >= 1 for stroke in strokes), (names, strokes)
    assert "4 stroke(s)" in page.locator("#handwrite-pad-count").inner_text()
    assert not page.locator("#handwrite-pad-strokes").is_visible()  # the strokes travel unseen
    textbox(page, "handwrite-style-text").fill("hi")
    textbox(page, "handwrite-text").fill("hello there")
    page.click("#handwrite-button")
    page.wait_for_function(
        "document.querySelector('#handwrite-recipe textarea')?.value.includes('--style-file my-hand.json')",
        timeout=90_000,
    )
    page.wait_for_function("document.querySelector('#handwrite-gif img')?.naturalWidth > 0", timeout=30_000)
    recipe = textbox(page, "handwrite-recipe").input_value().splitlines()[0]
    assert "--style-text hi" in recipe and "hello there" in textbox(page, "handwrite-summary").input_value()
    for preview in ("handwrite-png", "handwrite-gif"):
        boxes = page.evaluate(PREVIEW_BOXES, preview)
        assert all(bottom <= boxes["picture"][0] + 0.5 for _, bottom in boxes["overlays"]), boxes
        (width, height), (shown_width, shown_height) = boxes["natural"], boxes["shown"]
        assert abs(width / height - shown_width / shown_height) < 0.05 * width / height, boxes
    page.screenshot(path=str(ARTIFACTS / "web-handwrite-own-hand.png"), full_page=True)
    shown_paths = page.evaluate(
        "() => [...document.querySelectorAll('#handwrite-svg path')].map(p => p.getAttribute('d'))"
    )
    (tmp_path / "my-hand.json").write_text(json.dumps(strokes))
    run_cli(recipe, work, tmp_path)
    written = re.findall(r'<path d="([^"]+)"', (tmp_path / recipe.split("--out ")[-1]).read_text())
    assert written == shown_paths
    textbox(page, "handwrite-style-text").fill("")
    page.click("#handwrite-pad-clear")


def test_browser_look_inside_and_no_outside_requests(browser_page, studio_server):
    page, requests = browser_page
    page.get_by_role("tab", name="Look inside").click()
    choose(page, "inspect-model", TEXT)
    page.click("#inspect-button")
    page.wait_for_selector("#inspect-html .studio-cells span", timeout=60_000)
    page.screenshot(path=str(ARTIFACTS / "web-inspect.png"), full_page=True)
    origin = studio_server[0].rstrip("/")
    outside = [url for url in requests if not url.startswith((origin, "data:", "blob:"))]
    assert not outside, f"requests left the machine: {outside[:5]}"


# --- the page as a writer and a musician meet it (1366 x 900) -----------------------------


def laptop_tab(page, name: str) -> None:
    page.get_by_role("tab", name=name, exact=True).click()


def number(page, elem_id: str, value) -> None:
    box = page.locator(f"#{elem_id} input[type=number]")
    box.fill(str(value))
    box.press("Tab")


def error_text(page, tab: str) -> str:
    page.wait_for_selector(f"#{tab}-error", state="visible", timeout=60_000)
    return page.locator(f"#{tab}-error").inner_text()


PRIMARY = [
    ("Write", "write-button"),
    ("Compose", "compose-button"),
    ("Handwrite", "handwrite-button"),
    ("Look inside", "inspect-button"),
    ("Train", "train-start"),
    ("Models", "models-preview-button"),
]


def test_browser_primary_actions_are_above_the_fold(laptop_page):
    page = laptop_page
    for tab, button in PRIMARY:
        laptop_tab(page, tab)
        page.evaluate("window.scrollTo(0, 0)")
        box = page.locator(f"#{button}").bounding_box()
        assert box is not None and box["y"] + box["height"] <= 900, (tab, box)
        page.screenshot(path=str(ARTIFACTS / f"web-laptop-{button}.png"))


def test_browser_errors_stay_beside_the_action_until_the_next_one(laptop_page):
    page = laptop_page
    laptop_tab(page, "Write")
    choose(page, "write-model", TEXT)
    textbox(page, "write-prime").fill("ROMEO:")
    number(page, "write-length", 40)
    page.click("#write-button")
    page.wait_for_function("document.querySelector('#write-recipe textarea')?.value.length > 0", timeout=60_000)
    number(page, "write-temperature", -3)
    page.click("#write-button")
    assert "temperature must be 0 (greedy) to 100 (got -3.0)" in error_text(page, "write")
    page.wait_for_timeout(12_000)  # longer than Gradio's toasts last
    assert page.locator("#write-error").is_visible()
    # nothing stale under the message: the last run's text and recipe are gone
    assert textbox(page, "write-text").input_value() == "" and textbox(page, "write-recipe").input_value() == ""
    assert page.locator(".toast-body").count() == 0  # no pop-up: the sentence is on the page
    page.screenshot(path=str(ARTIFACTS / "web-error-stays.png"))
    number(page, "write-temperature", 0.8)
    page.click("#write-button")
    page.wait_for_selector("#write-error", state="hidden", timeout=10_000)
    page.wait_for_function("document.querySelector('#write-recipe textarea')?.value.length > 0", timeout=60_000)


def test_browser_refuses_out_of_range_numbers_in_every_tab(laptop_page, tmp_path):
    page = laptop_page
    laptop_tab(page, "Write")
    number(page, "write-temperature", 0.8)
    number(page, "write-length", 99_999_999)
    page.click("#write-button")
    assert "length is at most 2,000 tokens here (got 99,999,999)" in error_text(page, "write")
    assert page.locator("#write-length input").input_value() == "99999999"  # never clamped
    number(page, "write-length", 40)

    laptop_tab(page, "Compose")
    choose(page, "compose-model", MUSIC)
    number(page, "compose-beams", 0)
    page.click("#compose-button")
    assert "beams must be at least 1 (got 0)" in error_text(page, "compose")
    number(page, "compose-beams", 1)
    empty = tmp_path / "my empty song.mid"
    empty.write_bytes(b"")
    page.set_input_files("#compose-primer input[type=file]", str(empty))
    page.wait_for_selector("#compose-primer .file-preview, #compose-primer a", timeout=30_000)
    page.click("#compose-button")
    page.wait_for_function(
        "document.querySelector('#compose-error')?.innerText.includes('my empty song.mid')", timeout=60_000
    )
    assert "/tmp" not in page.locator("#compose-error").inner_text()
    page.screenshot(path=str(ARTIFACTS / "web-refused-compose.png"))

    laptop_tab(page, "Handwrite")
    choose(page, "handwrite-model", HAND)
    number(page, "handwrite-bias", -3)
    page.click("#handwrite-button")
    assert "bias must be 0 to 100 (got -3.0)" in error_text(page, "handwrite")
    number(page, "handwrite-bias", 1.5)
    textbox(page, "handwrite-text").fill("")
    page.click("#handwrite-button")
    page.wait_for_function(
        "document.querySelector('#handwrite-error')?.innerText.includes('type the text')", timeout=60_000
    )
    assert textbox(page, "handwrite-summary").input_value() == ""  # no "Hello world" drawn instead
    page.screenshot(path=str(ARTIFACTS / "web-refused-handwrite.png"))

    laptop_tab(page, "Look inside")
    choose(page, "inspect-model", TEXT)
    number(page, "inspect-cell", -1)
    page.click("#inspect-button")
    assert "cell must be 0 to 31" in error_text(page, "inspect")
    number(page, "inspect-cell", 0)

    laptop_tab(page, "Train")
    textbox(page, "train-name").fill("refused")
    number(page, "train-hidden", 0)
    page.click("#train-start")
    assert "hidden size must be 16 to 1024 here (got 0)" in error_text(page, "train")
    number(page, "train-hidden", 16)
    nothing = tmp_path / "notes.txt"
    nothing.write_text("")
    page.set_input_files("#train-uploads input[type=file]", str(nothing))
    page.wait_for_timeout(1000)
    page.click("#train-start")
    page.wait_for_function(
        "document.querySelector('#train-error')?.innerText.includes('notes.txt is empty')", timeout=60_000
    )
    assert "preparing" not in textbox(page, "train-status").input_value()
    page.screenshot(path=str(ARTIFACTS / "web-refused-train.png"))
    page.locator("#train-uploads button[aria-label='Clear']").first.click()


def test_browser_loss_plot_draws_its_lines(laptop_page):
    page = laptop_page
    laptop_tab(page, "Train")
    choose(page, "train-corpus", "text")
    textbox(page, "train-name").fill("plotted")
    for elem_id, value in [
        ("train-hidden", 16),
        ("train-layers", 1),
        ("train-seq-len", 16),
        ("train-batch", 4),
        ("train-max-steps", 12),
        ("train-eval-every", 4),
    ]:
        number(page, elem_id, value)
    page.click("#train-start")
    page.wait_for_function("document.querySelector('#train-status textarea')?.value.includes('done')", timeout=180_000)
    stroked = page.evaluate("""() => [...document.querySelectorAll('#train-plot svg path')]
        .filter(p => (p.getAttribute('d') || '').includes('L'))
        .map(p => p.getAttribute('stroke'))
        .filter(stroke => stroke && stroke !== 'none' && stroke !== 'transparent')""")
    assert {"#4f46e5", "#ea580c"} <= set(stroked), stroked  # train and validation lines, each stroked
    page.locator("#train-plot").screenshot(path=str(ARTIFACTS / "web-loss-plot.png"))


def test_browser_stop_keeps_what_was_written(laptop_page, studio_server, tmp_path):
    page = laptop_page
    laptop_tab(page, "Write")
    choose(page, "write-model", TEXT)
    textbox(page, "write-prime").fill("JULIET:")
    number(page, "write-temperature", 0)
    number(page, "write-length", 2000)
    # the page presses Stop itself as soon as text streams in: a tiny model writes 2,000 tokens in a second
    for _ in range(8):  # a run that ended before the Stop reached the server says nothing of Stop: again
        page.evaluate("""() => { document.querySelector('#write-recipe textarea').value = '';
            const timer = setInterval(() => {
            if (document.querySelector('#write-stats')?.innerText.includes('tokens...')) {
                document.querySelector('#write-stop').click(); clearInterval(timer); } }, 5); }""")
        page.click("#write-button")
        page.wait_for_function("document.querySelector('#write-recipe textarea')?.value.length > 0", timeout=60_000)
        stats = page.locator("#write-stats").inner_text()
        if "stopped at" in stats:
            break
    count = int(re.search(r"stopped at (\d+) tokens", stats).group(1))
    recipe = textbox(page, "write-recipe").input_value()
    text = textbox(page, "write-text").input_value()
    assert 0 < count < 2000 and f"--length {count} " in recipe and len(text) == len("JULIET:") + count
    assert page.locator("#write-file a").count() >= 1
    cli = run_cli(recipe + " --json", studio_server[1], tmp_path)  # the recipe makes exactly what is shown
    assert json.loads(cli.stdout)["text"] == text
    page.screenshot(path=str(ARTIFACTS / "web-write-stopped.png"))


def test_browser_shows_prose_once(laptop_page):
    page = laptop_page
    laptop_tab(page, "Write")
    choose(page, "write-model", TEXT)
    number(page, "write-temperature", 0.8)
    number(page, "write-length", 60)
    page.get_by_label("plain").check()
    page.click("#write-button")
    page.wait_for_function("document.querySelector('#write-stats')?.innerText.includes('tokens in')", timeout=60_000)
    assert page.locator("#write-text").is_visible() and not page.locator("#write-view").is_visible()
    page.get_by_label("markdown").check()
    page.click("#write-button")
    page.wait_for_selector("#write-view .studio-markdown", timeout=60_000)
    assert page.locator("#write-view").is_visible() and not page.locator("#write-text").is_visible()
    page.screenshot(path=str(ARTIFACTS / "web-write-once.png"))
    page.get_by_label("auto").check()


def test_browser_look_inside_switches_to_a_text_the_model_reads(laptop_page):
    page = laptop_page
    laptop_tab(page, "Look inside")
    choose(page, "inspect-model", "code")
    page.wait_for_function(
        "document.querySelector('#inspect-text textarea')?.value.startsWith('def greet')", timeout=60_000
    )
    choose(page, "inspect-model", "prose")
    page.wait_for_function(
        "document.querySelector('#inspect-text textarea')?.value.startsWith('ROMEO:')", timeout=60_000
    )
    page.click("#inspect-button")
    page.wait_for_selector("#inspect-html .studio-cells span", timeout=60_000)
    assert not page.locator("#inspect-error").is_visible()
    textbox(page, "inspect-text").fill("Good morrow, cousin.")  # the user's own text stays when readable
    choose(page, "inspect-model", "markdown")
    page.wait_for_timeout(3000)
    assert textbox(page, "inspect-text").input_value() == "Good morrow, cousin."
    page.screenshot(path=str(ARTIFACTS / "web-inspect-switch.png"))


def test_browser_doodles_hide_the_text_box(laptop_page):
    page = laptop_page
    laptop_tab(page, "Handwrite")
    choose(page, "handwrite-model", "doodle")
    page.wait_for_selector("#handwrite-text", state="hidden", timeout=30_000)
    page.click("#handwrite-button")
    page.wait_for_selector("#handwrite-svg svg path", timeout=60_000)
    page.screenshot(path=str(ARTIFACTS / "web-doodle.png"))
    choose(page, "handwrite-model", HAND)
    page.wait_for_selector("#handwrite-text", state="visible", timeout=30_000)


def test_browser_models_tab_explains_figures_and_previews(laptop_page):
    page = laptop_page
    laptop_tab(page, "Models")
    page.wait_for_selector("#models-table .cell-wrap", timeout=30_000)
    clipped = page.evaluate("""() => {
        const table = document.querySelector('#models-table').getBoundingClientRect();
        return [...document.querySelectorAll('#models-table .cell-wrap')]
            .filter(cell => cell.innerText.trim() && (cell.scrollWidth > cell.clientWidth + 1
                                                      || cell.getBoundingClientRect().right > table.right + 1))
            .map(cell => cell.innerText); }""")
    assert not clipped, clipped
    assert "bits per character" in page.locator("#models-legend").inner_text()
    choose(page, "models-card-picker", HAND)
    page.wait_for_function(
        "document.querySelector('#models-about')?.innerText.includes('nats per point')", timeout=60_000
    )
    assert "below zero" in page.locator("#models-about").inner_text()
    page.wait_for_function("document.querySelector('#models-sample-image img')?.naturalWidth > 0", timeout=60_000)
    page.screenshot(path=str(ARTIFACTS / "web-models.png"), full_page=True)


def test_browser_model_lists_refresh_without_a_restart(laptop_page, studio_server):
    import shutil

    page, (_, work) = laptop_page, studio_server
    shutil.copytree(work / "models" / TEXT, work / "models" / "copied")
    try:
        laptop_tab(page, "Write")
        page.click("#write-model input")
        page.get_by_role("option", name="copied", exact=True).wait_for(timeout=30_000)
        page.keyboard.press("Escape")
        laptop_tab(page, "Models")
        page.wait_for_function("document.querySelector('#models-table')?.innerText.includes('copied')", timeout=30_000)
    finally:
        shutil.rmtree(work / "models" / "copied")
