"""What the README promises about training and sampling, checked through the CLI:
words-domain train -> sample, corpus READMEs and LICENSEs skipped, text --prime-file,
--patience, --epochs, Ctrl-C saving a checkpoint, and the stroke bundles in `studio models`.

Every model here is tiny (hidden 16-32, a few dozen steps), so each test runs in seconds.
"""

from __future__ import annotations

import csv
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from studio.cli import app

ROOT = Path(__file__).resolve().parent.parent
runner = CliRunner()

# the words corpus: a few sentences, so every token fits in --vocab-size 200
SENTENCES = (
    "The quick brown fox jumps over the lazy dog.\n"
    "The dog, the fox and the cat sleep in the sun.\n"
    "A cat sees the dog; the dog sees a fox.\n"
)
ROOT_README_WORD = "zyzzyva"  # only in README.md at the corpus root: documentation, not data
ROOT_LICENSE_WORD = "warranty"  # only in LICENSE.txt at the corpus root
NESTED_README_WORD = "quokka"  # only in a README inside a subfolder: data like any file
PRIME = "The dog, the fox"
TINY_MODEL = ["--layers", "1", "--embedding-size", "16", "--dropout", "0"]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models train fastest on one thread; on a busy machine a second one waits on
    the first and makes each step many times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def invoke(*args: str):
    """`studio ARGS` in this process; a user error must end in SystemExit, never a traceback."""
    result = runner.invoke(app, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def one_line_error(result, *fragments: str) -> None:
    """Exit status 1 and a single `error: ...` line on stderr holding every fragment."""
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def metric_rows(run: Path) -> list[dict]:
    with open(run / "metrics.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def summary(run: Path) -> dict:
    return json.loads((run / "summary.json").read_text())


def checkpoint_step(run: Path) -> int:
    return torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=False)["step"]


@pytest.fixture(scope="module")
def words_corpus(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("words") / "notes"
    (folder / "more").mkdir(parents=True)
    (folder / "notes.txt").write_text(SENTENCES * 40)
    (folder / "README.md").write_text(f"# Notes\n\nA {ROOT_README_WORD} corpus.\n")
    (folder / "LICENSE.txt").write_text(f"No {ROOT_LICENSE_WORD} of any kind.\n")
    (folder / "more" / "README.md").write_text(f"The {NESTED_README_WORD} sees the cat.\n" * 5)
    return folder


@pytest.fixture(scope="module")
def words_bundle(words_corpus) -> Path:
    """A 1x32 LSTM over words, 30 steps, exported to an fp32 bundle."""
    work = words_corpus.parent
    result = invoke(
        "train",
        str(words_corpus),
        "--domain",
        "words",
        "--vocab-size",
        "200",
        "--hidden-size",
        "32",
        *TINY_MODEL,
        "--batch-size",
        "4",
        "--seq-len",
        "16",
        "--max-steps",
        "30",
        "--eval-every",
        "15",
        "--lr",
        "1e-2",
        "--warmup-steps",
        "2",
        "--runs-dir",
        str(work / "runs"),
        "--out",
        str(work / "export" / "notes"),
        "--quiet",
    )
    assert result.exit_code == 0, result.output
    return work / "export" / "notes"


def vocabulary(bundle: Path) -> list[str]:
    card = json.loads((bundle / "card.json").read_text())
    assert card["domain"]["name"] == "words" and card["head"] == "categorical"
    return card["domain"]["tokens"]


# --- words domain: train -> sample ---------------------------------------------------


def test_words_sample_starts_with_the_prime_as_typed(words_bundle):
    tokens = vocabulary(words_bundle)
    runs = words_bundle.parent.parent / "runs" / "notes"
    # 30 steps learn far more than a uniform guess over the vocabulary
    assert 0 < summary(runs)["best_val_nats"] < math.log(len(tokens)) - 1
    args = ["sample", "--model", str(words_bundle), "--prime", PRIME, "--length", "20", "--seed", "4", "--temp", "0.5"]
    result = invoke(*args, "--json")
    assert result.exit_code == 0, result.output
    item = json.loads(result.stdout)
    assert len(item["tokens"]) == 20
    assert item["text"] == PRIME + "".join(tokens[i] for i in item["tokens"])
    streamed = invoke(*args)
    assert streamed.stdout == item["text"] + "\n"


def test_words_prime_outside_the_vocabulary_is_refused_by_name(words_bundle):
    result = invoke("sample", "--model", str(words_bundle), "--prime", f"The {ROOT_README_WORD} dog")
    # as for characters outside a chars model's vocabulary: named, one line, exit 1
    one_line_error(
        result, f"1 word(s) of the prime are not in the model's vocabulary: {ROOT_README_WORD!r};", "--vocab-size"
    )


# --- corpus READMEs and LICENSEs -------------------------------------------------------


def test_readme_and_license_at_the_corpus_root_are_not_data(words_bundle):
    tokens = vocabulary(words_bundle)
    assert ROOT_README_WORD not in tokens and ROOT_LICENSE_WORD not in tokens
    assert NESTED_README_WORD in tokens
    assert {"quick", "fox", ".", "\n"} <= set(tokens)


def test_chars_vocabulary_skips_root_readme_and_license(tmp_path):
    """The same rule for the chars domain, read through the trainer's corpus loader."""
    from studio.train import load_corpus

    (tmp_path / "sub").mkdir()
    (tmp_path / "poem.txt").write_text("abc abc\n")
    (tmp_path / "README").write_text("§")
    (tmp_path / "license.md").write_text("¤")  # the match ignores case
    (tmp_path / "sub" / "README.txt").write_text("µ")
    corpus = load_corpus(tmp_path, "chars", {})
    assert corpus.domain.symbols == ["\x1e", "\n", " ", "a", "b", "c", "µ"]
    assert corpus.facts["documents"] == 2


# --- text --prime-file ------------------------------------------------------------------


def test_prime_file_text_starts_the_sample(words_bundle, tmp_path):
    prime = tmp_path / "start.txt"
    prime.write_text(PRIME + ".\n")
    result = invoke(
        "sample",
        "--model",
        str(words_bundle),
        "--prime-file",
        str(prime),
        "--length",
        "12",
        "--seed",
        "2",
        "--temp",
        "0.5",
        "--json",
    )
    assert result.exit_code == 0, result.output
    item = json.loads(result.stdout)
    tokens = vocabulary(words_bundle)
    assert item["text"] == PRIME + ".\n" + "".join(tokens[i] for i in item["tokens"])
    assert len(item["tokens"]) == 12


def test_missing_or_binary_prime_file_is_one_line(words_bundle, tmp_path):
    binary = tmp_path / "start.bin"
    binary.write_bytes(b"The dog\x00\x01\x02")
    for path in (tmp_path / "missing.txt", binary):
        result = invoke("sample", "--model", str(words_bundle), "--prime-file", str(path))
        one_line_error(result, f"cannot read prime file {path}", "UTF-8")


# --- --patience and --epochs -----------------------------------------------------------


@pytest.fixture(scope="module")
def chars_corpus(tmp_path_factory) -> Path:
    """One file of 3,000 characters."""
    path = tmp_path_factory.mktemp("chars") / "fox.txt"
    path.write_text(("the quick brown fox jumps over the lazy dog\n" * 70)[:3000])
    return path


def chars_train(corpus: Path, runs: Path, name: str, *args: str):
    return invoke(
        "train",
        str(corpus),
        "--name",
        name,
        "--runs-dir",
        str(runs),
        *TINY_MODEL,
        "--hidden-size",
        "16",
        "--batch-size",
        "4",
        "--seq-len",
        "16",
        "--no-export",
        "--quiet",
        *args,
    )


def test_patience_stops_after_that_many_evaluations_without_gain(chars_corpus, tmp_path):
    # a learning rate of 1e-9 leaves the weights as they are, so only the first
    # evaluation improves on nothing; patience 2 stops at the third
    result = chars_train(
        chars_corpus, tmp_path, "still", "--lr", "1e-9", "--eval-every", "1", "--patience", "2", "--max-steps", "50"
    )
    assert result.exit_code == 0, result.output
    run = tmp_path / "still"
    assert summary(run)["stop_reason"] == "early stop: no validation gain in 2 evaluations"
    assert summary(run)["step"] == 3 == checkpoint_step(run)
    rows = metric_rows(run)
    assert [int(r["step"]) for r in rows] == [1, 2, 3]
    first = float(rows[0]["val_loss"])
    assert all(abs(float(r["val_loss"]) - first) < 1e-4 for r in rows)


def test_epochs_set_the_number_of_steps(chars_corpus, tmp_path):
    result = chars_train(chars_corpus, tmp_path, "two", "--epochs", "2", "--eval-every", "1000", "--warmup-steps", "2")
    assert result.exit_code == 0, result.output
    run = tmp_path / "two"
    # [SEP] text [SEP]; 90% for training; 4 streams; windows of 16 with one token of lookahead
    train_tokens = int((3000 + 2) * 0.9)
    windows_per_epoch = (train_tokens // 4 - 1) // 16
    assert windows_per_epoch == 42
    assert summary(run)["stop_reason"] == "finished"
    assert summary(run)["step"] == 2 * windows_per_epoch == checkpoint_step(run)
    last = metric_rows(run)[-1]
    assert int(last["step"]) == 2 * windows_per_epoch and float(last["epoch"]) == 2.0
    assert last["val_loss"]  # the last step is always validated


# --- Ctrl-C -------------------------------------------------------------------------------


def test_ctrl_c_saves_a_checkpoint_and_resume_continues(chars_corpus, tmp_path):
    run = tmp_path / "runs" / "fox"
    command = [
        sys.executable,
        "-m",
        "studio",
        "train",
        str(chars_corpus),
        "--runs-dir",
        str(tmp_path / "runs"),
        *TINY_MODEL,
        "--hidden-size",
        "16",
        "--batch-size",
        "4",
        "--seq-len",
        "16",
        "--max-steps",
        "100000",
        "--eval-every",
        "5",
        "--no-export",
        "--quiet",
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 90
        while not (run / "checkpoint.pt").exists():  # written at the first evaluation
            assert process.poll() is None, process.communicate()
            assert time.time() < deadline, "no checkpoint within 90 s"
            time.sleep(0.05)
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, stderr[-2000:]
    assert "Traceback" not in stderr
    stopped = summary(run)
    assert stopped["stop_reason"].startswith(f"interrupted at step {stopped['step']}; checkpoint saved")
    assert f"--resume {run}" in stopped["stop_reason"]
    assert 5 <= stopped["step"] < 100000 and checkpoint_step(run) == stopped["step"]

    target = stopped["step"] + 7
    result = invoke("train", "--resume", str(run), "--max-steps", str(target), "--no-export", "--quiet")
    assert result.exit_code == 0, result.output
    assert summary(run)["stop_reason"] == "finished"
    assert summary(run)["step"] == target == checkpoint_step(run)
    steps = [int(r["step"]) for r in metric_rows(run)]
    assert steps == sorted(set(steps)) and steps[-1] == target  # each row once, in order


# --- the stroke bundles in `studio models` ------------------------------------------------


def test_models_json_lists_the_stroke_bundles(monkeypatch, tmp_path):
    monkeypatch.delenv("STUDIO_MODELS", raising=False)
    monkeypatch.chdir(tmp_path)  # only the shipped export/ folder
    result = invoke("models", "--json")
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    for name in ("handwriting", "doodle"):
        row = rows[name]
        assert (row["domain"], row["head"], row["unit"]) == ("strokes", "mixture", "nats/point")
        card = json.loads((Path(row["path"]) / "card.json").read_text())
        assert isinstance(row["validation"], float) and math.isfinite(row["validation"])
        assert row["validation"] == card["metrics"]["val_nats_per_point"]
