"""The web studio's batching server through ``gradio_client``: 20 users at once.

The app runs in this process on a free loopback port, with its own
:class:`~studio.serve.Batcher` so the test can see that requests shared runtime calls.
Twenty concurrent ``/write`` requests, each with its own seed and settings, must each
give the bytes its recipe gives through the CLI; every sampling endpoint must answer a
call that gives nothing but defaults.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import socket
import threading
from pathlib import Path

import pytest

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from studio.cli import app as cli_app  # noqa: E402
from studio.serve import Batcher  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
TEXT, MUSIC, HAND = "batchtext", "batchsongs", "batchhand"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _tiny_music_and_hand(models: Path, runs: Path, midi: Path) -> None:
    import mido

    from studio.config import TrainConfig
    from studio.training import run_training

    midi.mkdir()
    for k in range(2):
        song = mido.MidiFile(ticks_per_beat=480)
        track = mido.MidiTrack()
        song.tracks.append(track)
        for i in range(24):
            pitch = 60 + (i * (k + 2)) % 12
            track.append(mido.Message("note_on", note=pitch, velocity=80, time=0))
            track.append(mido.Message("note_off", note=pitch, velocity=0, time=240))
        song.save(midi / f"piece{k}.mid")
    small = dict(hidden_size=16, layers=1, embedding_size=8, dropout=0.0)
    config = TrainConfig(batch_size=4, seq_len=16, max_steps=3, eval_every=3, transpose=0)
    common = dict(resume=None, stop_after=None, quantize=None, export=True, runs_dir=runs, quiet=True)
    run_training(corpus=midi, name=MUSIC, domain="music", domain_options={}, model=small, config=config,
                 out=models / MUSIC, **common)  # fmt: skip
    hand = TrainConfig(batch_size=4, max_steps=2, eval_every=2, val_sequences=8, seed=1)
    run_training(corpus=ROOT / "corpora" / "handwriting", name=HAND, domain="strokes",
                 domain_options={"statistics_lines": 64}, model=dict(hidden_size=16, layers=1, mixtures=3),
                 config=hand, out=models / HAND, **common)  # fmt: skip


@pytest.fixture(scope="module")
def server(tiny_bundle, tmp_path_factory):
    work = tmp_path_factory.mktemp("web-batching")
    models = work / "models"
    shutil.copytree(tiny_bundle, models / TEXT)
    _tiny_music_and_hand(models, work / "runs", work / "midi")
    saved = {name: os.environ.get(name) for name in ("STUDIO_MODELS", "NO_PROXY", "no_proxy")}
    os.environ.update(STUDIO_MODELS=str(models), NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")
    from web.app import DEFAULT_CONCURRENCY, QUEUE_SIZE, build_app

    batcher = Batcher()
    demo = build_app(training_on=False, batcher=batcher)
    demo.queue(max_size=QUEUE_SIZE, default_concurrency_limit=DEFAULT_CONCURRENCY)
    port = _free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, share=False, ssr_mode=False)
    try:
        yield Client(f"http://127.0.0.1:{port}/", verbose=False), batcher, work
    finally:
        demo.close()
        batcher.close()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _recipe_text(recipe: str, folder: Path) -> str:
    """The text the recipe writes, run through the CLI in this process."""
    args = shlex.split(recipe)
    assert args[:2] == ["studio", "sample"], recipe
    out = args.index("--out")
    args[out + 1] = str(folder / args[out + 1])
    result = CliRunner().invoke(cli_app, args[1:])
    assert result.exit_code == 0, result.output
    return Path(args[out + 1]).read_text(encoding="utf-8")


def test_twenty_concurrent_writes_share_steps_and_each_equals_its_recipe(server, tmp_path):
    client, batcher, _ = server
    requests = [
        dict(model=TEXT, prime="W" if i % 2 else "", temperature=0.5 + 0.1 * (i % 5), top_k=(i % 3) * 5,
             seed=i, length=40 + i, stop="e\\n" if i % 4 == 3 else "")
        for i in range(20)
    ]  # fmt: skip
    steps_before, widest_before = batcher.steps, batcher.widest
    results: list = [None] * 20
    failures: dict[int, str] = {}
    gate = threading.Barrier(20)

    def call(index: int) -> None:
        gate.wait()
        try:
            results[index] = client.predict(**requests[index], api_name="/write")
        except Exception as error:  # shown below: a thread's exception is lost otherwise
            failures[index] = f"{type(error).__name__}: {error}"

    threads = [threading.Thread(target=call, args=(i,)) for i in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    assert batcher.widest > max(5, widest_before), "concurrent requests should have stepped together"
    assert batcher.steps - steps_before < sum(r["length"] for r in requests) / 2
    for index, result in enumerate(results):
        assert result is not None, f"request {index} did not answer: {failures.get(index, 'no answer in time')}"
        text, recipe, _, file, _ = result
        folder = tmp_path / str(index)
        folder.mkdir()
        assert _recipe_text(recipe, folder).encode() == Path(file).read_bytes() == text.encode(), requests[index]


def test_every_sampling_endpoint_works_with_its_defaults(server):
    client, _, _ = server
    text, recipe, *_ = client.predict(model=TEXT, api_name="/write")
    assert recipe.startswith(f"studio sample --model {TEXT}") and isinstance(text, str)
    summary, recipe, midi, wav, roll = client.predict(model=MUSIC, api_name="/compose")
    assert "bars" in summary and Path(midi).suffix == ".mid" and f"--model {MUSIC}" in recipe
    summary, recipe, svg, *_ = client.predict(model=HAND, api_name="/handwrite")
    assert "<svg" in svg and f"--model {HAND}" in recipe


def test_the_cli_json_equals_the_batched_write(server):
    client, _, _ = server
    text, recipe, *_ = client.predict(model=TEXT, prime="W", seed=11, length=30, api_name="/write")
    args = shlex.split(recipe)[1:]
    args = args[: args.index("--out")] + ["--json"]
    result = CliRunner().invoke(cli_app, args)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["text"] == text
