"""The Train tab: `studio train` in a subprocess that can be cancelled, followed live
through the run's ``metrics.csv``.

:class:`TrainingJobs` (one per app, made by ``build_app``) runs at most one training
at a time: the machine's cores are the limit.  The ``/train`` endpoint starts a job and
streams its progress until it ends; ``/cancel_training`` stops it (SIGTERM to its
process group; the last checkpoint stays, so ``studio train --resume`` continues it).
The finished run is exported to ``./export/NAME`` and appears in every model picker.

A corpus is a name from the studio's own list (the folders under ``./corpora``, the
package's ``corpora/`` and any configured corpus roots) or the files uploaded with the
request, never a path: anything else is refused before a file is read, and so is a
corpus holding a link that leads out of its root.  The run folder, its log and the
export are confined to ``runs/`` and ``export/`` (:mod:`studio.confine`).  The trainer
runs beside the corpus root and is handed the corpus by its relative name, so every
file it mentions is named relative to the corpus, and the log shown strips the
server's own folders.
"""

from __future__ import annotations

import csv
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import gradio as gr

from studio.bundle import PACKAGE_ROOT
from studio.confine import check_name, confine, contain, escaping_links, is_plain_name, pick
from studio.errors import StudioError
from studio.limits import Bounds, TrainLimits

from .common import NAME_PATTERN, action, as_float, as_int, error_box, upload_folder, user_errors

POLL_S = 1.0
CANCEL_GRACE_S = 10.0
LOG_TAIL_LINES = 15
UPLOAD_CHOICE = "(uploaded files)"
UPLOADS = "_uploads"  # runs/_uploads/NAME holds a request's uploaded files
MAX_UPLOAD_FILES = 50
MAX_UPLOAD_BYTES = 20 * 2**20  # all files of one request together (each is also capped by Gradio)
SHOWN_LINKS = 3  # links named in the refusal of a corpus that holds links out of its root
# what the Train tab offers: small models that train in minutes on a shared machine
LIMITS = TrainLimits(
    hidden_size=Bounds("hidden size", 16, 1024),
    layers=Bounds("layers", 1, 3),
    seq_len=Bounds("sequence length", 16, 256),
    batch_size=Bounds("batch size", 1, 128),
    max_steps=Bounds("max steps", 0),
    max_minutes=Bounds("max minutes", 0),
    eval_every=Bounds("validate every", 1),
)
SERIES_COLOURS = {"train": "#4f46e5", "validation": "#ea580c"}


@dataclass(frozen=True)
class Corpus:
    """A corpus folder the studio lists: ``folder`` lies inside ``root`` (both resolved)."""

    name: str
    root: Path
    folder: Path

    @property
    def argument(self) -> str:
        """The corpus as the trainer is given it, from the root's parent folder."""
        return str(self.folder.relative_to(self.root.parent))


def list_corpora(roots: list[Path]) -> dict[str, Corpus]:
    """name -> :class:`Corpus` for each plain-named folder in ``roots`` that stays
    inside its root (a link out of a root is not listed); the first root wins a name."""
    found: dict[str, Corpus] = {}
    for root in roots:
        if not root.is_dir():
            continue
        for entry in sorted(root.iterdir()):
            if entry.name in found or not is_plain_name(entry.name) or not entry.is_dir():
                continue
            try:
                folder = confine(root, entry.name, what="corpus")
            except StudioError:
                continue
            found[entry.name] = Corpus(entry.name, root.resolve(), folder)
    return found


def trainable_domains() -> list[str]:
    """Domains `studio train` handles (the categorical ones), plus "auto"."""
    from studio.domains import DOMAINS, CategoricalDomain

    return ["auto"] + [name for name, cls in DOMAINS.items() if issubclass(cls, CategoricalDomain)]


@dataclass
class Job:
    """A running or finished training; ``shown_command`` and ``shown_run`` /
    ``shown_out`` name things relative to the studio's folder, and ``redactions``
    (server text -> shown text) are applied to every log line shown."""

    name: str
    shown_command: list[str]
    run_dir: Path
    out_dir: Path
    log_path: Path
    process: subprocess.Popen
    max_steps: int | None
    shown_run: str = ""
    shown_out: str = ""
    redactions: tuple[tuple[str, str], ...] = ()
    started: float = field(default_factory=time.time)
    cancelled: bool = False

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def metrics(self) -> list[dict]:
        file = self.run_dir / "metrics.csv"
        if not file.exists():
            return []
        with open(file, newline="") as handle:
            return [row for row in csv.DictReader(handle) if row.get("step")]

    def log_tail(self) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        for server, shown in self.redactions:
            text = text.replace(server, shown)
        return "\n".join(text.splitlines()[-LOG_TAIL_LINES:])

    def error_line(self) -> str:
        for line in reversed(self.log_tail().splitlines()):
            if line.startswith("error:"):
                return line[len("error:") :].strip()
        return f"training stopped with exit code {self.process.returncode}; see the log below"


class TrainingJobs:
    """Starts, follows and cancels training subprocesses (one at a time), in
    ``workdir``: corpora from ``workdir/corpora``, the package's ``corpora/`` and
    ``corpus_roots``; runs in ``workdir/runs``, exports in ``workdir/export``."""

    def __init__(self, workdir: Path, corpus_roots: tuple[Path, ...] = ()):
        self.workdir = Path(workdir)
        self.runs_dir = self.workdir / "runs"
        self.export_dir = self.workdir / "export"
        self.uploads_dir = self.runs_dir / UPLOADS
        self.corpus_roots = [self.workdir / "corpora", PACKAGE_ROOT / "corpora", *(Path(root) for root in corpus_roots)]
        self.lock = threading.Lock()
        self.current: Job | None = None

    def corpora(self) -> dict[str, Corpus]:
        """The studio's corpus list, read afresh (a folder added to a root shows up)."""
        return list_corpora(self.corpus_roots)

    def listed_corpus(self, value: str) -> Corpus:
        """The listed corpus ``value`` names, refused (before a file is read) when it is
        not in the list or holds a link that leads out of its root."""
        corpus = pick(value, self.corpora(), "corpus")
        links = escaping_links(corpus.folder, corpus.root)
        if links:
            more = f" and {len(links) - SHOWN_LINKS} more" if len(links) > SHOWN_LINKS else ""
            raise StudioError(
                f"corpus {corpus.name!r} refused: {', '.join(links[:SHOWN_LINKS])}{more} "
                "link outside its corpus folder; copy those files in instead"
            )
        return corpus

    def corpus_from_uploads(self, name: str, files: list[str]) -> Corpus:
        """Copy uploaded files (at most ``MAX_UPLOAD_FILES``, ``MAX_UPLOAD_BYTES`` in
        all, plain names only) into ``runs/_uploads/NAME`` with a README saying where they
        came from.  Everything is checked before anything is copied."""
        if len(files) > MAX_UPLOAD_FILES:
            raise StudioError(
                f"at most {MAX_UPLOAD_FILES} files per training run (got {len(files)}); "
                "put a bigger corpus in a corpus folder"
            )
        sources = [contain(file, [upload_folder()], what="upload") for file in files]
        names = [check_name(Path(file).name, "uploaded file") for file in files]
        if len(set(names)) < len(names):
            raise StudioError("two uploaded files have the same name: rename one")
        total = sum(source.stat().st_size for source in sources)
        if total == 0:
            shown_names = ", ".join(names[:SHOWN_LINKS]) + (" ..." if len(names) > SHOWN_LINKS else "")
            raise StudioError(
                f"nothing to train on: {shown_names} "
                f"{'is' if len(names) == 1 else 'are'} empty; upload files with text "
                "(or music) in them"
            )
        if total > MAX_UPLOAD_BYTES:
            raise StudioError(
                f"uploads are capped at {MAX_UPLOAD_BYTES // 2**20} MB per training run "
                f"(got {total / 2**20:.1f} MB); put a bigger corpus in a corpus folder"
            )
        folder = confine(self.uploads_dir, name, what="upload folder")
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        for source, file_name in zip(sources, names):
            shutil.copyfile(source, folder / file_name)
        (folder / "README.md").write_text(
            f"Uploaded through the web studio on {time.strftime('%Y-%m-%d %H:%M')}: "
            f"{len(files)} file(s). Source and licence: as given by the uploader.\n"
        )
        return Corpus(name, self.uploads_dir.resolve(), folder)

    def shown(self, path: Path, otherwise: str) -> str:
        """``path`` relative to the working folder when it is inside, else ``otherwise``:
        the server's own folders are not shown."""
        workdir = self.workdir.resolve()
        return str(path.relative_to(workdir)) if path.is_relative_to(workdir) else otherwise

    def folders(self, name: str) -> tuple[Path, Path, Path]:
        """(run folder, export folder, log file) for a new run ``name``, confined to
        ``runs/`` and ``export/``; StudioError while another run trains or when the name
        is taken.  Called before uploads are copied, and again when the run starts."""
        if self.current is not None and self.current.running:
            raise StudioError(f"{self.current.name} is still training: cancel it or wait (one run at a time)")
        run_dir = confine(self.runs_dir, name, what="run")
        out_dir = confine(self.export_dir, name, what="model")
        log_path = confine(self.runs_dir, f"{name}.log", what="training log")
        if run_dir.exists() or out_dir.exists():
            raise StudioError(f"a run or model called {name!r} exists already: choose another name")
        return run_dir, out_dir, log_path

    def start(self, corpus: Corpus, name: str, options: dict) -> Job:
        with self.lock:
            run_dir, out_dir, log_path = self.folders(name)
            self.runs_dir.mkdir(parents=True, exist_ok=True)
            arguments = [
                corpus.argument,
                "--name",
                name,
                "--runs-dir",
                str(run_dir.parent),
                "--out",
                str(out_dir),
                "--quiet",
            ]
            shown = [
                "studio",
                "train",
                self.shown(corpus.folder, corpus.argument),
                "--name",
                name,
                "--runs-dir",
                self.shown(run_dir.parent, "runs"),
                "--out",
                self.shown(out_dir, f"export/{name}"),
                "--quiet",
            ]
            for flag, value in options.items():
                if value is not None:
                    arguments += [f"--{flag.replace('_', '-')}", str(value)]
                    shown += [f"--{flag.replace('_', '-')}", str(value)]
            # from beside the root, whatever the working folder: the same package, and file
            # names relative to the corpus in every message the trainer prints
            env = dict(
                os.environ,
                PYTHONPATH=os.pathsep.join([str(PACKAGE_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]),
            )
            with open(log_path, "w") as log:
                process = subprocess.Popen(
                    [sys.executable, "-m", "studio", "train", *arguments],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    cwd=corpus.root.parent,
                    env=env,
                    start_new_session=True,
                )
            redactions = (
                (corpus.argument + os.sep, ""),
                (str(self.workdir.resolve()) + os.sep, ""),
                (str(self.workdir) + os.sep, ""),
            )
            self.current = Job(
                name,
                shown,
                run_dir,
                out_dir,
                log_path,
                process,
                options.get("max_steps"),
                shown_run=self.shown(run_dir, f"runs/{name}"),
                shown_out=self.shown(out_dir, f"export/{name}"),
                redactions=redactions,
            )
            return self.current

    def cancel(self) -> str:
        with self.lock:
            job = self.current
        if job is None or not job.running:
            return "nothing is training"
        job.cancelled = True
        os.killpg(job.process.pid, signal.SIGTERM)
        try:
            job.process.wait(CANCEL_GRACE_S)
        except subprocess.TimeoutExpired:
            os.killpg(job.process.pid, signal.SIGKILL)
            job.process.wait()
        return f"cancelled {job.name}"

    def shutdown(self) -> None:
        if self.current is not None and self.current.running:
            self.cancel()


def progress(job: Job) -> tuple[str, list[list]]:
    """(one status line, [step, loss, series] rows for the plot)."""
    rows = job.metrics()
    points = []
    for row in rows:
        step = float(row["step"])
        for key, series in (("train_loss", "train"), ("val_loss", "validation")):
            if row.get(key):
                points.append([step, float(row[key]), series])
    elapsed = time.time() - job.started
    if not rows:
        return f"{job.name}: preparing ({elapsed:.0f} s)", points
    last = rows[-1]
    vals = [r["val_loss"] for r in rows if r.get("val_loss")]
    total = f"/{job.max_steps}" if job.max_steps else ""
    line = (
        f"{job.name}: step {int(float(last['step']))}{total}, train loss "
        f"{float(last['train_loss']):.3f}"
        + (f", validation {float(vals[-1]):.3f}" if vals else "")
        + f", {float(last.get('tokens_per_s') or 0):,.0f} tokens/s, {elapsed:.0f} s"
    )
    return line, points


def plot_value(points: list[list]):
    import pandas as pd

    # typed even when empty: the plot fixes its axis types from the first value it gets
    return pd.DataFrame(points, columns=["step", "loss", "series"]).astype(
        {"step": "float64", "loss": "float64", "series": "str"}
    )


def every_series(table):
    """``table`` after one empty row per series: the plot fixes its colour scale from the
    first table it draws, and a series missing from that one would never get a stroke."""
    import pandas as pd

    if table is None:
        return None
    placeholders = plot_value([[0.0, float("nan"), series] for series in SERIES_COLOURS])
    return pd.concat([placeholders, table], ignore_index=True)


def for_page(values: tuple) -> tuple:
    status, table, log, command = values
    return status, every_series(table), log, command


def make_train(jobs: TrainingJobs):
    def train(
        corpus: str | None = None,
        uploads: list[str] | None = None,
        name: str = "",
        domain: str = "auto",
        hidden_size: int = 128,
        layers: int = 2,
        seq_len: int = 64,
        batch_size: int = 32,
        max_steps: int = 300,
        max_minutes: float = 10,
        eval_every: int = 50,
    ):
        """Train and export a model; streams (status, loss rows, log, command)."""
        name = (name or "").strip()
        if not NAME_PATTERN.match(name):
            raise StudioError("give the model a name: letters, digits, '-', '_' or '.', up to 48 characters")
        check_name(name, "model name")
        options = {
            "hidden_size": as_int(hidden_size, "hidden size"),
            "layers": as_int(layers, "layers"),
            "seq_len": as_int(seq_len, "sequence length"),
            "batch_size": as_int(batch_size, "batch size"),
            "max_steps": as_int(max_steps, "max steps") or None,
            "max_minutes": as_float(max_minutes, "max minutes") or None,
            "eval_every": as_int(eval_every, "validate every"),
        }
        LIMITS.check(options)
        options["domain"] = None if domain in (None, "", "auto") else domain
        listed = jobs.listed_corpus(corpus) if corpus and corpus != UPLOAD_CHOICE else None
        jobs.folders(name)
        if uploads:
            source = jobs.corpus_from_uploads(name, list(uploads))
        elif listed is not None:
            source = listed
        else:
            raise StudioError("choose a corpus folder or upload files to train on")
        job = jobs.start(source, name, options)
        command = shlex.join(job.shown_command)
        while job.running:
            line, points = progress(job)
            yield line, plot_value(points), job.log_tail(), command
            time.sleep(POLL_S)
        line, points = progress(job)
        if job.cancelled:
            line = (
                f"{job.name}: cancelled. The last checkpoint is kept: "
                f"`studio train --resume {job.shown_run}` continues it."
            )
        elif job.process.returncode != 0:
            raise StudioError(job.error_line())
        elif (job.out_dir / "card.json").exists():
            line = f"{job.name}: done, exported to {job.shown_out}; pick it in the model lists."
        yield line, plot_value(points), job.log_tail(), command

    return train


def build_tab(jobs: TrainingJobs):
    """Components and events of the Train tab; returns the start button's page event,
    onto which the app chains a picker refresh."""
    choices = list(jobs.corpora())
    gr.Markdown(
        "Train a recurrent model on a corpus folder or on files you upload. "
        "One run at a time; a small model on a small corpus takes minutes on a laptop."
    )
    with gr.Row():
        with gr.Column(scale=2, min_width=320):
            with gr.Row():
                corpus = gr.Dropdown(
                    choices + [UPLOAD_CHOICE],
                    value=choices[0] if choices else UPLOAD_CHOICE,
                    label="Corpus",
                    allow_custom_value=True,
                    elem_id="train-corpus",
                    info="A folder the studio lists (corpora/), or your uploads.",
                )
                name = gr.Textbox("", label="Model name", placeholder="my-model", elem_id="train-name")
            with gr.Row():
                start = gr.Button("Start training", variant="primary", elem_id="train-start")
                cancel = gr.Button("Cancel", variant="stop", elem_id="train-cancel")
            error = error_box("train")
            uploads = gr.File(
                label="...or upload files", file_count="multiple", type="filepath", elem_id="train-uploads", height=120
            )
            with gr.Row():
                domain = gr.Dropdown(trainable_domains(), value="auto", label="Domain")
                hidden_size = gr.Number(
                    128, step=16, label="Hidden size", elem_id="train-hidden", info=_range(LIMITS.hidden_size)
                )
                layers = gr.Number(2, step=1, label="Layers", elem_id="train-layers", info=_range(LIMITS.layers))
            with gr.Row():
                seq_len = gr.Number(
                    64, step=16, label="Sequence length", elem_id="train-seq-len", info=_range(LIMITS.seq_len)
                )
                batch_size = gr.Number(
                    32, step=1, label="Batch size", elem_id="train-batch", info=_range(LIMITS.batch_size)
                )
            with gr.Row():
                max_steps = gr.Number(300, step=1, label="Max steps", info="0: by epochs.", elem_id="train-max-steps")
                max_minutes = gr.Number(10, label="Max minutes", info="0: no limit.", elem_id="train-max-minutes")
                eval_every = gr.Number(
                    50, step=1, label="Validate every", info="Steps, 1 or more.", elem_id="train-eval-every"
                )
        with gr.Column(scale=3, min_width=360):
            status = gr.Textbox(label="Progress", elem_id="train-status")
            plot = gr.LinePlot(
                x="step",
                y="loss",
                color="series",
                label="Loss (nats/token)",
                color_map=SERIES_COLOURS,
                height=320,
                elem_id="train-plot",
            )
            log = gr.Textbox(label="Log", lines=6, max_lines=15, elem_id="train-log")
            command = gr.Textbox(label="Same run from the CLI", buttons=["copy"], elem_id="train-command")
    event = action(
        start,
        make_train(jobs),
        inputs=[
            corpus,
            uploads,
            name,
            domain,
            hidden_size,
            layers,
            seq_len,
            batch_size,
            max_steps,
            max_minutes,
            eval_every,
        ],
        outputs=[status, plot, log, command],
        error=error,
        api_name="train",
        page=for_page,
        concurrency_limit=1,
        concurrency_id="train",
        show_progress="minimal",
    )
    cancel.click(user_errors(jobs.cancel), outputs=status, api_name="cancel_training")
    return event


def _range(bounds: Bounds) -> str:
    return f"{bounds.low:g} to {bounds.high:g}."
