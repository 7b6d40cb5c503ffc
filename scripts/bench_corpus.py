"""Large-corpus benchmark: the token cache against corpus size, in one run.

    python scripts/bench_corpus.py --sizes 30 100 300 [--work DIR] [--json results.json]

For each size it writes ``corpus-<N>MB.txt`` (corpora/shakespeare/input.txt repeated to N
MB) into a scratch folder, then measures, each in a fresh process:

* ``build``: tokenising it into the token cache (``studio.token_cache.load``): seconds in
  the process and its peak RSS;
* ``ready``: how long the trainer's corpus step takes from that existing cache, torch
  already imported: ``load_corpus`` for a new run (fingerprint, memory map) and
  ``stored_payload`` for a resume (memory map);
* ``start``: ``studio train`` of a small model (1x16 LSTM) from that existing cache, from
  launch to its first step (interpreter and torch start-up, the corpus step, model and
  optimiser, one step: ``--stop-after 1`` writes the checkpoint right after it), and the
  same for ``--resume`` of that run; the whole process (loss plot included) is timed too;
* ``train``: peak RSS of ``studio train`` running 50 steps (batch 64 x 128) and one
  validation over the whole held-out tenth (``--skip-validation``: the steps alone);
* the cache's bytes on disk per corpus character.

With ``--baseline`` the smallest size is also trained with ``--no-cache`` (the corpus read
into memory), for comparison.  Peak RSS is the child's ``ru_maxrss`` (os.wait4).  The page
cache is warm: the corpus was just written.  Prints a Markdown table (the README's "Large
corpora" section) with the CPU and its AVX flags.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHAKESPEARE = ROOT / "corpora" / "shakespeare" / "input.txt"
MB = 1_000_000
SMALL_MODEL = ["--hidden-size", "16", "--layers", "1", "--embedding-size", "16", "--dropout", "0"]
BUILD = """
import json, sys, time
from pathlib import Path
from studio.domains import DOMAINS
from studio.token_cache import CacheSettings, load
started = time.perf_counter()
cache = load(Path(sys.argv[1]), DOMAINS["chars"], {}, CacheSettings(folder=Path(sys.argv[2])), quiet=True)
print(json.dumps({"seconds": time.perf_counter() - started, "bytes": cache.size_bytes,
                  "token_bytes": cache.ids.nbytes, "tokens": int(cache.meta["tokens"]),
                  "documents": len(cache.meta["document_ends"])}))
"""
TORCH_FLOOR = "import torch, torch._dynamo"  # what any `studio train` pays before its first step (AdamW imports dynamo)
READY = """
import json, sys, time
from pathlib import Path
from studio import train  # torch is imported before the clock starts
from studio.token_cache import CacheSettings
started = time.perf_counter()
corpus = train.load_corpus(Path(sys.argv[1]), "chars", {}, CacheSettings(folder=Path(sys.argv[2])), quiet=True)
new_run = time.perf_counter() - started
started = time.perf_counter()
train.stored_payload(corpus.stored, corpus.domain.to_config(), quiet=True)
print(json.dumps({"new_run": new_run, "resume": time.perf_counter() - started}))
"""


def write_corpus(path: Path, megabytes: int) -> int:
    """The shakespeare text repeated to exactly ``megabytes`` MB (it is ASCII: bytes are
    characters); returns the size."""
    text = SHAKESPEARE.read_bytes()
    size = megabytes * MB
    with open(path, "wb") as handle:
        written = 0
        while written < size:
            piece = text[: size - written]
            handle.write(piece)
            written += len(piece)
    return size


def measure(command: list[str], log: Path) -> dict:
    """Run ``command``: its wall time, CPU time (user + system: what the other work on
    shared cores inflates least), peak RSS (MB) and when it was launched."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    launched, started = time.time(), time.perf_counter()
    with open(log, "w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=log.parent)
        _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - started
    if process.returncode != 0:
        raise SystemExit(f"failed ({process.returncode}): {' '.join(command)}\n{log.read_text()[-3000:]}")
    return {
        "seconds": round(seconds, 2),
        "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 2),
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
        "launched": launched,
    }


def first_step(measured: dict, run: Path) -> float:
    """Seconds from launch to the first step: with ``--stop-after 1`` the checkpoint is
    written right after it (a small model's in milliseconds)."""
    return round((run / "checkpoint.pt").stat().st_mtime - measured["launched"], 2)


def studio_train(*args: str) -> list[str]:
    return [sys.executable, "-m", "studio", "train", *args, "--no-export", "--quiet"]


def bench_size(megabytes: int, work: Path, baseline: bool, validate: bool) -> dict:
    folder = work / f"{megabytes}MB"
    folder.mkdir(parents=True, exist_ok=True)
    corpus = folder / f"corpus-{megabytes}MB.txt"
    characters = write_corpus(corpus, megabytes)
    cache, runs = folder / "cache", folder / "runs"
    row: dict = {"corpus_mb": megabytes, "characters": characters}

    build = measure([sys.executable, "-c", BUILD, str(corpus), str(cache)], folder / "build.log")
    facts = json.loads((folder / "build.log").read_text().strip().splitlines()[-1])
    row.update(
        build_s=round(facts["seconds"], 2),
        build_process_s=build["seconds"],
        build_peak_rss_mb=build["peak_rss_mb"],
        cache_mb=round(facts["bytes"] / MB, 1),
        cache_bytes_per_char=round(facts["bytes"] / characters, 3),
        tokens=facts["tokens"],
    )

    measure([sys.executable, "-c", READY, str(corpus), str(cache)], folder / "ready.log")
    ready = json.loads((folder / "ready.log").read_text().strip().splitlines()[-1])
    row.update(ready_s=round(ready["new_run"], 2), resume_ready_s=round(ready["resume"], 3))

    common = [
        "--cache-dir",
        str(cache),
        "--runs-dir",
        str(runs),
        "--batch-size",
        "64",
        "--seq-len",
        "128",
        *SMALL_MODEL,
    ]
    start = measure(
        studio_train(
            str(corpus),
            "--name",
            "start",
            *common,
            "--max-steps",
            "1000000",
            "--eval-every",
            "1000000",
            "--stop-after",
            "1",
        ),
        folder / "start.log",
    )
    start_step = first_step(start, runs / "start")
    resume = measure(studio_train("--resume", str(runs / "start"), "--stop-after", "1"), folder / "resume.log")
    floor = measure([sys.executable, "-c", TORCH_FLOOR], folder / "floor.log")
    steps = (
        ["--max-steps", "50", "--eval-every", "50"]
        if validate
        else ["--max-steps", "1000000", "--eval-every", "1000000", "--stop-after", "50"]
    )
    trained = measure(studio_train(str(corpus), "--name", "train", *common, *steps), folder / "train.log")
    row.update(
        torch_floor_s=floor["seconds"],
        torch_floor_cpu_s=floor["cpu_seconds"],
        start_s=start_step,
        start_process_s=start["seconds"],
        start_cpu_s=start["cpu_seconds"],
        resume_cpu_s=resume["cpu_seconds"],
        start_peak_rss_mb=start["peak_rss_mb"],
        resume_s=first_step(resume, runs / "start"),
        resume_process_s=resume["seconds"],
        train_s=trained["seconds"],
        train_peak_rss_mb=trained["peak_rss_mb"],
        validated=validate,
    )
    if baseline:
        whole = measure(
            studio_train(
                str(corpus),
                "--name",
                "whole",
                "--no-cache",
                "--runs-dir",
                str(runs),
                "--batch-size",
                "64",
                "--seq-len",
                "128",
                *SMALL_MODEL,
                "--max-steps",
                "1000000",
                "--eval-every",
                "1000000",
                "--stop-after",
                "1",
            ),
            folder / "whole.log",
        )
        row.update(
            no_cache_start_s=first_step(whole, runs / "whole"),
            no_cache_process_s=whole["seconds"],
            no_cache_peak_rss_mb=whole["peak_rss_mb"],
        )
    shutil.rmtree(folder)  # the next size needs the disk more than this one
    return row


def machine() -> dict:
    """CPU, flags and versions; nothing imported here (a child forked from a big parent
    would count the parent's pages in its peak RSS)."""
    flags, model = set(), ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags") and not flags:
            flags = {f for f in line.split(":", 1)[1].split() if f.startswith("avx") or f == "sha_ni"}
        if line.startswith("model name") and not model:
            model = line.split(":", 1)[1].strip()
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "flags": sorted(flags),
        "python": platform.python_version(),
        "numpy": version("numpy"),
        "torch": version("torch"),
    }


def table(rows: list[dict], facts: dict) -> str:
    lines = [
        f"CPU: {facts['cpu']}, {facts['cores']} cores, flags {' '.join(facts['flags']) or '(no AVX)'}; "
        f"Python {facts['python']}, numpy {facts['numpy']}, torch {facts['torch']}; load average "
        f"{facts['load_before']:.1f} before, {facts['load_after']:.1f} after (other work shares the cores).",
        "",
        "| corpus | cache build | build rate | build peak RSS | cache on disk | bytes/char |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['corpus_mb']} MB | {r['build_s']} s | {r['corpus_mb'] / max(r['build_s'], 1e-9):.0f} MB/s "
            f"| {r['build_peak_rss_mb']:.0f} MB | {r['cache_mb']} MB | {r['cache_bytes_per_char']} |"
        )
    lines += [
        "",
        "| corpus | corpus ready: new run / resume | first step: new run / resume | whole process, "
        "CPU time: new run / resume | `import torch, torch._dynamo` alone: wall (CPU) | start peak RSS "
        "| train peak RSS | train time |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['corpus_mb']} MB | {r['ready_s']} s / {r['resume_ready_s']} s "
            f"| {r['start_s']} s / {r['resume_s']} s | {r['start_cpu_s']} s / {r['resume_cpu_s']} s "
            f"| {r['torch_floor_s']} s ({r['torch_floor_cpu_s']} s) "
            f"| {r['start_peak_rss_mb']:.0f} MB | {r['train_peak_rss_mb']:.0f} MB "
            f"| {r['train_s']} s{'' if r['validated'] else ' (no validation)'} |"
        )
    for r in rows:
        if "no_cache_start_s" in r:
            lines += [
                "",
                f"Without the cache (`--no-cache`, {r['corpus_mb']} MB): first step after "
                f"{r['no_cache_start_s']} s at {r['no_cache_peak_rss_mb']:.0f} MB peak RSS.",
            ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[30, 100, 300], help="corpus sizes in MB")
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temp folder)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--baseline", action="store_true", help="also train the smallest size with --no-cache")
    parser.add_argument(
        "--skip-validation",
        action="store_true",
        help="train 50 steps without the validation pass (it reads the whole held-out tenth)",
    )
    args = parser.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="studio-bench-corpus-"))
    facts = {**machine(), "load_before": os.getloadavg()[0]}
    rows = []
    for index, size in enumerate(sorted(args.sizes)):
        rows.append(bench_size(size, work, baseline=args.baseline and index == 0, validate=not args.skip_validation))
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    facts["load_after"] = os.getloadavg()[0]
    if args.json:
        args.json.write_text(json.dumps({"machine": facts, "rows": rows}, indent=1))
    print(table(rows, facts))
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
