"""The token cache: streamed tokenisation equals reading whole, reuse and rebuild, memory-
mapped training equal to in-memory training, resume, DDP ranks on one cache, bad cases
(damaged cache, corpus edited while caching, full disk) and `studio cache list|clear`."""

from __future__ import annotations

import csv
import errno
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from studio import corpus as corpus_module
from studio import token_cache
from studio.cli import app
from studio.config import TrainConfig
from studio.corpus import read_text, text_chunks
from studio.data import split_point
from studio.domains import DOMAINS
from studio.domains.words import piece_tokens, split_tokens
from studio.errors import StudioError
from studio.token_cache import CacheSettings, list_caches
from studio.train import train

ROOT = Path(__file__).resolve().parent.parent
SONGS = ROOT / "corpora" / "songs" / "bach"
MODEL = dict(hidden_size=16, layers=1, embedding_size=8, dropout=0.0)
SCHEDULE = dict(batch_size=4, seq_len=16, max_steps=8, eval_every=4, seed=3, warmup_steps=2)


def build(corpus: Path, folder: Path, domain: str = "chars", **options) -> token_cache.TokenCache:
    return token_cache.load(corpus, DOMAINS[domain], options, CacheSettings(folder=folder), quiet=True)


def in_memory(corpus: Path, domain: str = "chars", **options):
    cls = DOMAINS[domain]
    documents = cls.read_corpus(corpus)
    built = cls.from_documents(documents, **options)
    return built, built.corpus_ids(documents)


def metrics(run_dir: Path) -> dict[int, dict]:
    with open(run_dir / "metrics.csv") as handle:
        return {int(r["step"]): r for r in csv.DictReader(handle)}


def assert_same_losses(a: dict[int, dict], b: dict[int, dict]) -> None:
    assert set(a) == set(b)
    for step in a:
        assert float(a[step]["train_loss"]) == pytest.approx(float(b[step]["train_loss"]), abs=1e-6)
        assert bool(a[step]["val_loss"]) == bool(b[step]["val_loss"])
        if a[step]["val_loss"]:
            assert float(a[step]["val_loss"]) == pytest.approx(float(b[step]["val_loss"]), abs=1e-6)


@pytest.fixture
def awkward_corpus(tmp_path) -> Path:
    """Text that tests chunk edges: CRLF, a BOM, accents and emoji, a blank file, a
    binary file and a latin-1 file (both skipped with one warning), a nested folder."""
    folder = tmp_path / "awkward"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_bytes("\ufeffCafé — naïve 🎵 words,\r\nand  more\r\n\r\nwords!".encode())
    (folder / "sub" / "b.md").write_text("# 𝄞 heading\n\nthe the the cat; the dog.\n" * 3)
    (folder / "blank.txt").write_text("  \n\t\n")
    (folder / "blob.bin").write_bytes(b"\x00\x01\x02binary")
    (folder / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    return folder


# --- streaming equals reading whole ------------------------------------------------------


@pytest.mark.parametrize("domain, options", [("chars", {}), ("words", {"vocab_size": 12})])
@pytest.mark.parametrize("chunk_bytes", [1, 5, 1 << 20])
def test_streamed_text_equals_the_in_memory_vocabulary_and_ids(
    awkward_corpus, tmp_path, monkeypatch, capsys, domain, options, chunk_bytes
):
    monkeypatch.setattr(corpus_module, "CHUNK_BYTES", chunk_bytes)  # edges inside characters, CRLFs, words
    expected_domain, expected_ids = in_memory(awkward_corpus, domain, **options)
    capsys.readouterr()
    cache = build(awkward_corpus, tmp_path / "cache", domain, **options)
    assert cache.domain.to_config() == expected_domain.to_config()
    assert np.array_equal(cache.ids, expected_ids)
    assert cache.ids.dtype == np.uint16 and isinstance(cache.ids, np.memmap)
    assert cache.meta["document_ends"] == list(np.flatnonzero(expected_ids == expected_domain.separator_id)[1:])
    warnings = capsys.readouterr().err
    assert warnings.count("warning") == 1 and "blob.bin" in warnings and "latin1.txt" in warnings


def test_streamed_music_equals_the_in_memory_events_and_limits(tmp_path):
    corpus = tmp_path / "songs"
    corpus.mkdir()
    for source in sorted(SONGS.iterdir())[:6]:
        shutil.copy(source, corpus / source.name)
    (corpus / "broken.mid").write_bytes(b"MThd\x00\x00garbage")
    expected_domain, expected_ids = in_memory(corpus, "music")
    cache = build(corpus, tmp_path / "cache", "music")
    assert cache.domain.to_config() == expected_domain.to_config()
    assert np.array_equal(cache.ids, expected_ids)
    assert len(cache.meta["document_ends"]) == 6


texts = st.text(alphabet=st.sampled_from(list("ab \t\r\n,é🎵\ufeff")), max_size=60)


@given(texts, st.booleans(), st.integers(1, 9))
@settings(max_examples=150, deadline=None)
def test_text_chunks_join_to_the_whole_file_decoded(tmp_path_factory, text, bom, chunk_bytes):
    """Naive reference: decode the whole file, drop one BOM, CRLF -> LF."""
    data = ("\ufeff" if bom else "").encode() + text.encode()
    file = tmp_path_factory.mktemp("chunks") / "t.txt"
    file.write_bytes(data)
    expected = data.decode("utf-8").removeprefix("\ufeff").replace("\r\n", "\n")
    assert "".join(piece for piece, _ in text_chunks(file, chunk_bytes)) == expected
    assert sum(size for _, size in text_chunks(file, chunk_bytes)) == len(data)
    assert read_text(file) == expected


@given(st.text(max_size=80), st.lists(st.integers(0, 80), max_size=6))
@settings(max_examples=200, deadline=None)
def test_tokens_of_a_text_in_pieces_equal_the_tokens_of_the_whole(text, cuts):
    edges = [0, *sorted(min(c, len(text)) for c in cuts), len(text)]
    pieces = [text[a:b] for a, b in zip(edges, edges[1:])]
    assert [t for tokens in piece_tokens(pieces) for t in tokens] == split_tokens(text)


# --- reuse, rebuild, bad cases -----------------------------------------------------------------


def test_an_unchanged_corpus_reuses_its_cache_and_an_edited_one_gets_a_new_one(tiny_corpus, tmp_path, capsys):
    corpus = tmp_path / "corpus"
    shutil.copytree(tiny_corpus, corpus)
    first = build(corpus, tmp_path / "cache")
    built_at = (first.folder / "tokens.bin").stat().st_mtime_ns
    again = build(corpus, tmp_path / "cache")
    assert again.folder == first.folder and (again.folder / "tokens.bin").stat().st_mtime_ns == built_at
    assert capsys.readouterr().err == ""  # quiet, nothing to report
    with open(corpus / "b.txt", "a") as handle:
        handle.write("\nEXIT, pursued by a bear.\n")
    edited = build(corpus, tmp_path / "cache")
    notes = capsys.readouterr().err.strip().splitlines()
    assert len(notes) == 1 and "changed since it was tokenised" in notes[0] and first.key in notes[0]
    assert edited.key != first.key and len(edited.ids) == len(first.ids) + len("\nEXIT, pursued by a bear.\n")
    assert sorted(row["key"] for row in list_caches(tmp_path / "cache")) == sorted([first.key, edited.key])
    assert edited.meta["corpus"]["sha256"] != first.meta["corpus"]["sha256"]


@pytest.mark.parametrize("damage", ["json", "size", "dtype"])
def test_a_damaged_cache_is_rebuilt_with_a_notice(tiny_corpus, tmp_path, capsys, damage):
    cache = build(tiny_corpus, tmp_path / "cache")
    expected = np.array(cache.ids)
    if damage == "json":
        (cache.folder / "cache.json").write_text("{not json")
    elif damage == "size":
        with open(cache.folder / "tokens.bin", "r+b") as handle:
            handle.truncate(1000)
    else:
        meta = json.loads((cache.folder / "cache.json").read_text())
        (cache.folder / "cache.json").write_text(json.dumps({**meta, "dtype": "int8"}))
    capsys.readouterr()
    rebuilt = build(tiny_corpus, tmp_path / "cache")
    notes = capsys.readouterr().err.strip().splitlines()
    assert len(notes) == 1 and "damaged" in notes[0] and "rebuilding" in notes[0]
    assert rebuilt.folder == cache.folder and np.array_equal(rebuilt.ids, expected)


def test_a_checkpoint_reference_maps_its_cache_or_rebuilds_it_from_an_unchanged_corpus(tiny_corpus, tmp_path, capsys):
    corpus = tmp_path / "corpus"
    shutil.copytree(tiny_corpus, corpus)
    cache = build(corpus, tmp_path / "cache")
    reference, expected = cache.reference(), np.array(cache.ids)
    assert json.loads(json.dumps(reference)) == reference  # the checkpoint keeps plain data
    assert np.array_equal(token_cache.reopen(reference, CacheSettings(), quiet=True).ids, expected)
    (cache.folder / "cache.json").write_text("[]")
    capsys.readouterr()
    assert np.array_equal(token_cache.reopen(reference, CacheSettings(), quiet=True).ids, expected)
    notes = capsys.readouterr().err.strip().splitlines()
    assert len(notes) == 1 and "damaged" in notes[0]
    shutil.rmtree(cache.folder)
    shutil.rmtree(corpus)
    with pytest.raises(StudioError, match="its corpus .* is gone: restore the corpus"):
        token_cache.reopen(reference, CacheSettings(), quiet=True)


@pytest.mark.parametrize("when", ["between the passes", "after the passes"])
def test_a_corpus_edited_while_it_is_cached_is_refused(tiny_corpus, tmp_path, monkeypatch, when):
    """Between the passes, encoding meets a character the first pass never saw; after
    them, the second fingerprint differs from the first."""
    corpus = tmp_path / "corpus"
    shutil.copytree(tiny_corpus, corpus)
    if when == "between the passes":
        begin = token_cache.CacheWriter.begin

        def edit_then_begin(self, vocab_size, separator_id):
            (corpus / "a.txt").write_text("Ω, someone saved the file meanwhile")
            begin(self, vocab_size, separator_id)

        monkeypatch.setattr(token_cache.CacheWriter, "begin", edit_then_begin)
    else:
        chars = DOMAINS["chars"]
        streamed = chars.stream_corpus.__func__

        def stream_then_edit(cls, path, files, options, sink):
            domain = streamed(cls, path, files, options, sink)
            (corpus / "a.txt").write_text("someone saved the file meanwhile")
            return domain

        monkeypatch.setattr(chars, "stream_corpus", classmethod(stream_then_edit))
    with pytest.raises(StudioError, match="changed while it was being tokenised") as caught:
        build(corpus, tmp_path / "cache")
    assert "\n" not in str(caught.value)
    assert [p.name for p in (tmp_path / "cache").iterdir() if p.is_dir()] == []  # nothing half-written


def test_a_full_disk_is_one_line_and_leaves_nothing(tiny_corpus, tmp_path, monkeypatch):
    calls = []

    def full(self, ids):
        calls.append(len(ids))
        if len(calls) > 3:
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(token_cache.CacheWriter, "_append", full)
    result = CliRunner().invoke(
        app,
        [
            "train",
            str(tiny_corpus),
            "--cache-dir",
            str(tmp_path / "cache"),
            "--runs-dir",
            str(tmp_path / "runs"),
            "--max-steps",
            "1",
        ],
    )
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1].startswith("error: no space left for the token cache")
    assert "Traceback" not in result.output
    assert [p.name for p in (tmp_path / "cache").iterdir() if p.is_dir()] == []
    assert not (tmp_path / "runs").exists()


# --- training, resume ------------------------------------------------------------------------------


def test_training_from_the_cache_equals_training_in_memory_and_resume_maps_it(tiny_corpus, tmp_path, capsys):
    cache = CacheSettings(folder=tmp_path / "cache")
    from_cache = train(
        tiny_corpus,
        tmp_path / "cached",
        domain_name="chars",
        model_overrides=MODEL,
        train_config=TrainConfig(**SCHEDULE),
        quiet=True,
        cache=cache,
    )
    whole = train(
        tiny_corpus,
        tmp_path / "whole",
        domain_name="chars",
        model_overrides=MODEL,
        train_config=TrainConfig(**SCHEDULE),
        quiet=True,
        cache=CacheSettings(enabled=False),
    )
    a = metrics(from_cache.path)
    assert set(a) == {1, 4, 8} and float(a[8]["train_loss"]) < float(a[1]["train_loss"])
    assert_same_losses(a, metrics(whole.path))
    cached_checkpoint = torch.load(from_cache.checkpoint, weights_only=False)
    reference = cached_checkpoint["corpus"]
    assert reference["token_cache"] == list_caches(tmp_path / "cache")[0]["key"]
    assert reference["corpus"] == str(tiny_corpus.resolve()) and len(reference["sha256"]) == 64
    assert isinstance(torch.load(whole.checkpoint, weights_only=False)["corpus"], np.ndarray)  # the old way
    assert from_cache.checkpoint.stat().st_size < whole.checkpoint.stat().st_size - 50_000  # no ids inside

    # paused, the cache cleared: the resume tokenises the unchanged corpus again and goes on exactly
    halves = train(
        tiny_corpus,
        tmp_path / "halves",
        domain_name="chars",
        model_overrides=MODEL,
        train_config=TrainConfig(**SCHEDULE),
        stop_after=5,
        quiet=True,
        cache=cache,
    )
    token_cache.clear_caches(tmp_path / "cache")
    capsys.readouterr()
    resumed = train(None, halves.path, resume=True, quiet=False)
    assert "is gone: tokenising" in capsys.readouterr().err
    assert_same_losses(metrics(resumed.path), a)
    assert len(list_caches(tmp_path / "cache")) == 1


def test_resume_refuses_a_corpus_changed_after_its_cache_was_cleared(tiny_corpus, tmp_path):
    corpus = tmp_path / "corpus"
    shutil.copytree(tiny_corpus, corpus)
    cache = CacheSettings(folder=tmp_path / "cache")
    run = train(
        corpus,
        tmp_path / "run",
        domain_name="chars",
        model_overrides=MODEL,
        train_config=TrainConfig(**SCHEDULE),
        stop_after=2,
        quiet=True,
        cache=cache,
    )
    token_cache.clear_caches(tmp_path / "cache")
    (corpus / "a.txt").write_text("a different play")
    result = CliRunner().invoke(app, ["train", "--resume", str(run.path), "--no-export"])
    assert result.exit_code == 1
    line = result.output.strip().splitlines()[-1]
    assert line.startswith("error: the token cache") and "changed since this run started" in line


# --- DDP ------------------------------------------------------------------------------------------

RANK_SCRIPT = """
import json, os, sys, time
from pathlib import Path
import numpy as np
from studio import token_cache
from studio.config import TrainConfig
from studio.models.categorical import CategoricalTrainable
from studio.token_cache import CacheSettings
from studio.train import train

corpus, cache_dir, out = (Path(a) for a in sys.argv[1:4])
rank = int(os.environ["RANK"])
real_build, real_train_data = token_cache._build, CategoricalTrainable.train_data
seen = {}

def slow_build(*args, **kwargs):  # slow enough that the other rank arrives during the build
    with open(out / "builds.txt", "a") as log:
        log.write(f"{rank}\\n")
    time.sleep(2)
    return real_build(*args, **kwargs)

def recording_train_data(self, domain, payload, config, rank_, world_size):
    data = real_train_data(self, domain, payload, config, rank_, world_size)
    streams = data.batches.streams
    offset = streams.__array_interface__["data"][0] - payload.__array_interface__["data"][0]
    first = offset // payload.itemsize // streams.shape[1]
    seen.update(file=str(payload.filename), memmap=isinstance(payload, np.memmap),
                shares=bool(np.shares_memory(streams, payload)), rows=list(range(first, first + streams.shape[0])),
                window=data.batch(0, __import__("torch").device("cpu"))["inputs"].tolist())
    return data

token_cache._build = slow_build
CategoricalTrainable.train_data = recording_train_data
train(corpus, out / "run", domain_name="chars", model_overrides=dict(hidden_size=8, layers=1, embedding_size=4),
      train_config=TrainConfig(batch_size=2, seq_len=8, max_steps=2, eval_every=2, seed=1), quiet=True,
      cache=CacheSettings(folder=cache_dir))
(out / f"rank{rank}.json").write_text(json.dumps(seen))
"""


def test_two_ddp_ranks_build_one_cache_and_read_disjoint_rows_of_it(tiny_corpus, tmp_path, torchrun):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    # Rarely (once in a fresh-clone run, then 0 of 4 reruns) a rank aborts in torch's gloo
    # teardown after training ("terminate called without an active exception"); only that
    # abort earns one fresh attempt, any other failure fails at once.
    root = tmp_path
    for attempt in range(2):
        tmp_path = root / f"attempt{attempt}"
        tmp_path.mkdir()
        (tmp_path / "rank.py").write_text(RANK_SCRIPT)
        command = torchrun("2", str(tmp_path / "rank.py"), str(tiny_corpus), str(tmp_path / "cache"), str(tmp_path))
        done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
        teardown_abort = "terminate called without an active exception" in done.stdout + done.stderr
        if done.returncode == 0 or not teardown_abort or attempt == 1:
            break
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert len((tmp_path / "builds.txt").read_text().split()) == 1  # one rank built, the other waited
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    caches = list_caches(tmp_path / "cache")
    assert len(caches) == 1 and caches[0]["state"] == "ok"
    tokens_file = str(tmp_path / "cache" / caches[0]["key"] / "tokens.bin")
    for seen in ranks:
        assert seen["memmap"] and seen["shares"] and seen["file"] == tokens_file  # views of one map, no copy
    assert ranks[0]["rows"] == [0, 1] and ranks[1]["rows"] == [2, 3]  # disjoint blocks of the 4 streams
    ids = np.fromfile(tokens_file, dtype=np.uint16)
    train_ids = ids[: split_point(len(ids), 0.1)]
    row_len = len(train_ids) // 4
    for seen in ranks:
        expected = [train_ids[row * row_len : row * row_len + 8].tolist() for row in seen["rows"]]
        assert seen["window"] == expected
    assert (tmp_path / "run" / "summary.json").exists()


# --- the CLI -----------------------------------------------------------------------------------------


def test_cache_list_and_clear_through_the_cli(tiny_corpus, tmp_path, awkward_corpus):
    folder = tmp_path / "cache"
    first = build(tiny_corpus, folder)
    second = build(awkward_corpus, folder, "words", vocab_size=50)
    runner = CliRunner()
    listed = runner.invoke(app, ["cache", "list", "--cache-dir", str(folder), "--json"])
    assert listed.exit_code == 0
    rows = {row["key"]: row for row in json.loads(listed.output)}
    assert set(rows) == {first.key, second.key}
    assert rows[first.key]["tokens"] == len(first.ids) and rows[first.key]["domain"] == "chars"
    assert rows[second.key]["domain"] == "words" and rows[second.key]["state"] == "ok"
    assert rows[first.key]["bytes"] >= 2 * len(first.ids)
    table = runner.invoke(app, ["cache", "list", "--cache-dir", str(folder)], env={"COLUMNS": "200"})
    assert first.key in table.output and "chars" in table.output

    cleared = runner.invoke(app, ["cache", "clear", first.key, "--cache-dir", str(folder)])
    assert cleared.exit_code == 0 and "removed 1 token cache" in cleared.output
    assert [row["key"] for row in list_caches(folder)] == [second.key]
    missing = runner.invoke(app, ["cache", "clear", "no-such-cache", "--cache-dir", str(folder)])
    assert missing.exit_code == 1 and "no token cache named no-such-cache" in missing.output
    everything = runner.invoke(app, ["cache", "clear", "--cache-dir", str(folder)])
    assert everything.exit_code == 0 and "removed 1 token cache" in everything.output
    assert list_caches(folder) == [] and not list(folder.iterdir())  # lock files go too


def test_the_default_cache_folder_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("STUDIO_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert token_cache.default_cache_dir() == tmp_path / "sequence-studio"
    monkeypatch.setenv("STUDIO_CACHE_DIR", str(tmp_path / "mine"))
    assert token_cache.default_cache_dir() == tmp_path / "mine"
