"""`--held-out random`: the validation part as a fixed hashed draw of the corpus's files
instead of its last files in name order, read the same way by the trainer's token cache,
by `studio eval --split val` (which follows the card) and by the two-sample test's
held-out pieces (those wholly after the trainer's token cut)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from studio.config import TrainConfig
from studio.corpus import held_out_of, held_out_order
from studio.domains import MusicDomain, read_documents
from studio.domains.base import Document
from studio.errors import StudioError
from studio.evaluation import split_documents
from studio.music.files import read_pieces
from studio.token_cache import META_FILE, open_cache

ROOT = Path(__file__).resolve().parent.parent
CHORALES = sorted((ROOT / "corpora" / "songs" / "bach").glob("*.mid"))[:40]
needs_chorales = pytest.mark.skipif(len(CHORALES) < 40, reason="needs corpora/songs/bach")


def test_tail_keeps_name_order_and_random_is_a_fixed_draw_of_files() -> None:
    names = [f"/data/songs/tune{i:02d}.mid" for i in range(30)] + ["/data/songs/book.abc#1", "/data/songs/book.abc#2"]
    assert held_out_order(names, Path("/data/songs"), "tail") == list(range(32))
    order = held_out_order(names, Path("/data/songs"), "random")
    assert sorted(order) == list(range(32)) and order != list(range(32))
    # the same corpus elsewhere (another checkout, a relative path) is read in the same order
    moved = [name.replace("/data/songs", "corpora/x") for name in names]
    assert held_out_order(moved, Path("corpora/x"), "random") == order
    # a file's documents stay together and in order
    assert order.index(31) == order.index(30) + 1
    # adding a file leaves the others' order alone (a hash per file, not a shuffle of the list)
    grown = held_out_order([*names, "/data/songs/new.mid"], Path("/data/songs"), "random")
    assert [i for i in grown if i != 32] == order
    # the last tenth is a spread of the catalogue, not its end
    tail = sorted(order[-6:])
    assert tail[0] < 24


def test_unknown_held_out_is_refused() -> None:
    with pytest.raises(StudioError, match="--held-out must be one of tail | random"):
        held_out_order(["a"], Path("."), "middle")
    with pytest.raises(StudioError, match="--held-out"):
        TrainConfig(held_out="middle")
    assert held_out_of({}) == "tail" and held_out_of({"train": {"held_out": "random"}}) == "random"


def test_bad_held_out_on_the_cli_is_one_line(tiny_corpus, studio_env, tmp_path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "studio", "train", str(tiny_corpus), "--held-out", "middle"]
        + ["--runs-dir", str(tmp_path)],
        env=studio_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "--held-out" in result.stderr
    assert not any(tmp_path.iterdir())  # no run folder left behind


@needs_chorales
def test_split_documents_follows_the_trainers_token_cut() -> None:
    documents = [Document(str(path), read_pieces(path)[0]) for path in CHORALES]
    domain = MusicDomain.from_documents(documents)
    trained, held = split_documents(domain, documents, 0.1)
    ids = domain.corpus_ids(documents)
    cut = int(len(ids) * 0.9)
    held_ids = domain.corpus_ids(held)
    # the held-out pieces are exactly the end of the validation tokens: nothing the trainer saw
    assert len(held_ids) - 1 <= len(ids) - cut and np.array_equal(held_ids[1:], ids[len(ids) - len(held_ids) + 1 :])
    assert np.array_equal(domain.corpus_ids(trained)[:-1], ids[: len(domain.corpus_ids(trained)) - 1])
    assert len(domain.corpus_ids(trained)) - 1 < cut
    # at most the one piece the cut falls in is in neither
    assert len(documents) - 1 <= len(trained) + len(held) <= len(documents) and held


@needs_chorales
def test_random_held_out_trains_and_evaluates_on_the_same_pieces(tmp_path: Path) -> None:
    """A tiny run with `--held-out random`: the token cache holds the corpus in the random
    order, the card records it, and `studio eval --split val` scores the same tokens and
    sets the samples beside the pieces the trainer held out."""
    corpus = tmp_path / "chorales"
    corpus.mkdir()
    for path in CHORALES:
        shutil.copy(path, corpus / path.name)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg"}
    bundle = tmp_path / "bundle"
    tiny = ["--hidden-size", "24", "--layers", "1", "--embedding-size", "8", "--batch-size", "4", "--seq-len", "32"]
    command = [sys.executable, "-m", "studio", "train", str(corpus), "--domain", "music", *tiny]
    command += ["--max-steps", "3", "--eval-every", "3", "--held-out", "random", "--runs-dir", str(tmp_path / "runs")]
    result = subprocess.run(
        [*command, "--out", str(bundle)], env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-2000:]
    card = json.loads((bundle / "card.json").read_text())
    assert card["train"]["held_out"] == "random"

    random_order = read_documents(MusicDomain, corpus, "random")
    name_order = read_documents(MusicDomain, corpus, "tail")
    assert [d.path for d in random_order] != [d.path for d in name_order]
    domain = MusicDomain.from_documents(random_order)
    _, held = split_documents(domain, random_order, 0.1)
    _, tail_held = split_documents(domain, name_order, 0.1)
    assert {d.path for d in held} != {d.path for d in tail_held}

    from studio.api import evaluate

    report = evaluate(str(bundle), str(corpus), split="val", samples=6, bars=2)
    assert report["held_out"] == "random" and report["pieces"] == len(held)
    # `studio quantize` re-reads the corpus in the card's order: the same held-out tokens
    result = subprocess.run(
        [sys.executable, "-m", "studio", "quantize", str(bundle), "--corpus", str(corpus)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    again = json.loads((bundle / "card.json").read_text())
    assert again["metrics"]["held_out_nats_fp32"] == card["metrics"]["held_out_nats_fp32"]

    # the trainer's token cache holds the corpus in the order eval reads it
    metas = Path(os.environ["STUDIO_CACHE_DIR"]).glob(f"chorales-music-*/{META_FILE}")
    caches = [open_cache(meta.parent) for meta in metas]
    trained_ids = [cache.ids for cache in caches if cache.meta["options"].get("held_out") == "random"]
    assert len(trained_ids) == 1 and np.array_equal(np.asarray(trained_ids[0]), domain.corpus_ids(random_order))


def test_random_held_out_of_one_file_says_it_is_the_tail(tiny_corpus, studio_env, tmp_path) -> None:
    one = tiny_corpus / "a.txt"
    command = [sys.executable, "-m", "studio", "train", str(one), "--held-out", "random", "--max-steps", "1"]
    command += ["--hidden-size", "8", "--layers", "1", "--batch-size", "2", "--seq-len", "8", "--no-export"]
    result = subprocess.run(
        [*command, "--runs-dir", str(tmp_path)], env=studio_env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "its validation part is still its tail" in result.stderr + result.stdout
