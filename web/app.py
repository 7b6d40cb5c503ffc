"""Sequence Studio in the browser: Write, Compose, Handwrite, Look inside, Train, Models.

``build_app()`` builds the Gradio Blocks inside a function (nothing happens at import);
``launch(host, port)`` serves it behind a bounded queue, on 127.0.0.1 unless told
otherwise, never shared, analytics off, fonts from the system (no request leaves the
machine).  Any other interface needs credentials or an explicit ``no_auth``, and has no
Train tab unless ``allow_training`` (:mod:`web.serving`).  Every action is also a named
API endpoint for ``gradio_client``: ``/write``, ``/compose``, ``/handwrite``,
``/inspect``, ``/train``, ``/cancel_training``, ``/models``, ``/model_card``.  All of
them call the same library functions as the CLI, and every model or corpus they take is
a name from the studio's own lists (:mod:`studio.confine`).

    python -m web.app --port 7860        # or: studio web
"""

from __future__ import annotations

import argparse
import atexit
import logging
import os
import signal
import sys
import tempfile
import threading
from pathlib import Path

from studio.errors import StudioError, require

ASSETS = Path(__file__).resolve().parent / "assets"
QUEUE_SIZE = 64  # requests waiting beyond this are turned away with "queue full"
DEFAULT_CONCURRENCY = 2  # events without their own limit: the machine has few cores
# /write, /compose and /handwrite have their own limit (web.common.SAMPLING_CONCURRENCY):
# their users' rows step together in one batch (studio.serve), so 20 run at once
MAX_UPLOAD = "5mb"  # primer MIDI files and training texts
CACHE_SWEEP = (3600, 3600)  # Gradio's file cache: every hour, drop files older than an hour
SYSTEM_FONTS = ("ui-sans-serif", "system-ui", "-apple-system", "Segoe UI", "Roboto", "sans-serif")
MONO_FONTS = ("ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "monospace")
TRAINING_OFF = "Training is off on this server: it serves other machines and was started without `--allow-training`."


def theme():
    """A Gradio theme on system fonts only: no web-font downloads from anywhere."""
    import gradio as gr

    return gr.themes.Soft(primary_hue="indigo", font=list(SYSTEM_FONTS), font_mono=list(MONO_FONTS))


def build_app(jobs=None, *, training_on: bool = True, batcher=None):
    """The studio's Blocks.  ``jobs`` (a :class:`web.training.TrainingJobs`) runs the
    Train tab's subprocesses; by default one working in the current folder (``runs/``,
    ``export/``, ``corpora/``).  Without ``training_on`` the Train tab only says it is off,
    and there is no ``/train`` or ``/cancel_training`` endpoint.  ``batcher`` (a
    :class:`studio.serve.Batcher`, by default a new one) steps the sampling tabs' users
    together."""
    import functools

    import gradio as gr

    from studio.serve import Batcher

    from . import cells, compose, handwrite, models, training, write
    from .common import OutputFolders, choices_update, missing_notice, picker_update

    outputs = OutputFolders(Path(tempfile.gettempdir()) / "studio-web")
    batcher = batcher or Batcher()  # one running batch per model, shared by every tab's users
    jobs = jobs or training.TrainingJobs(Path.cwd())
    train_event = None

    with gr.Blocks(title="Sequence Studio", analytics_enabled=False, delete_cache=CACHE_SWEEP) as demo:
        gr.Markdown(
            "# Sequence Studio\nRecurrent models of prose, code, music and handwriting. "
            "Every result comes with the `studio` command that reproduces it."
        )
        tabs = []
        with gr.Tabs():
            with gr.Tab("Write", id="write"):
                tabs.append(write.build_tab(outputs, batcher))
            with gr.Tab("Compose", id="compose"):
                tabs.append(compose.build_tab(outputs, batcher))
            with gr.Tab("Handwrite", id="handwrite"):
                tabs.append(handwrite.build_tab(outputs, batcher))
            with gr.Tab("Look inside", id="inspect"):
                tabs.append(cells.build_tab())
            with gr.Tab("Train", id="train"):
                if training_on:
                    train_event = training.build_tab(jobs)
                else:
                    gr.Markdown(TRAINING_OFF, elem_id="train-off")
            with gr.Tab("Models", id="models") as models_tab:
                model_list = models.build_tab(outputs)

        pickers = [tab["model"] for tab in tabs]
        notices = [tab["notice"] for tab in tabs]
        for tab in tabs:  # a bundle exported since the page loaded is offered when the list opens
            tab["model"].focus(
                functools.partial(choices_update, tab["accepts"]),
                outputs=tab["model"],
                queue=False,
                api_visibility="private",
                show_progress="hidden",
            )
        models_tab.select(
            models.card_rows, outputs=model_list["table"], queue=False, api_visibility="private", show_progress="hidden"
        )

        def refresh(*current):
            """New bundles (a finished training run, a copied export) show up everywhere."""
            updates = [
                picker_update(tab["accepts"], value, tab["default"]) for tab, value in zip(tabs, current[: len(tabs)])
            ]
            texts = [
                missing_notice(update["choices"], tab["what"], tab["default"]) for tab, update in zip(tabs, updates)
            ]
            rows = models.card_rows()
            names = [row[0] for row in rows]
            chosen = {} if current[-1] in names else {"value": names[0] if names else None}
            return (*updates, *texts, rows, gr.update(choices=names, **chosen))

        refresh_io = dict(
            fn=refresh,
            inputs=[*pickers, model_list["picker"]],
            outputs=[*pickers, *notices, model_list["table"], model_list["picker"]],
            api_visibility="private",
            show_progress="hidden",
        )
        demo.load(**refresh_io)
        if train_event is not None:
            train_event.then(**refresh_io)
    return demo


def launch(
    host: str = "127.0.0.1",
    port: int = 7860,
    *,
    auth: tuple[str, ...] = (),
    auth_file: Path | None = None,
    no_auth: bool = False,
    allow_training: bool = False,
    corpus_roots: tuple[Path, ...] = (),
    prevent_thread_lock: bool = False,
):
    """Serve the studio on ``host:port`` (blocks unless ``prevent_thread_lock``).
    ``auth`` holds ``USER:PASSWORD`` values and ``auth_file`` one per line; a host other
    than loopback needs one of them or ``no_auth``, and gets training only with
    ``allow_training`` (StudioError before anything starts otherwise).  ``corpus_roots``
    are folders whose subfolders the Train tab lists beside ``./corpora``."""
    from .serving import decide
    from .training import TrainingJobs

    require(1 <= port <= 65535, f"--port must be 1 to 65535 (got {port})")
    exposure = decide(host, auth=auth, auth_file=auth_file, no_auth=no_auth, allow_training=allow_training)
    _check_free(host, port)
    log_lines()
    if exposure.warning:
        print(exposure.warning, file=sys.stderr, flush=True)
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    jobs = TrainingJobs(Path.cwd(), corpus_roots=tuple(corpus_roots))
    atexit.register(jobs.shutdown)  # a training run does not outlive the server
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupt)  # `kill` stops like Ctrl-C: cleanly
    demo = build_app(jobs, training_on=exposure.training)
    demo.queue(max_size=QUEUE_SIZE, default_concurrency_limit=DEFAULT_CONCURRENCY)
    return demo.launch(
        server_name=host,
        server_port=port,
        share=False,
        max_file_size=MAX_UPLOAD,
        auth=list(exposure.credentials) or None,
        theme=theme(),
        css_paths=[ASSETS / "studio.css"],
        ssr_mode=False,
        show_error=False,
        footer_links=["api", "settings"],
        mcp_server=False,
        pwa=False,
        enable_monitoring=False,
        prevent_thread_lock=prevent_thread_lock,
    )


def _check_free(host: str, port: int) -> None:
    """StudioError, before the app is built, when ``host:port`` cannot be served (taken by
    another server, or a port this user may not bind)."""
    import errno
    import socket

    try:
        with socket.create_server((host, port)):
            pass
    except OSError as error:
        reason = str(error.strerror or error).split(" (while attempting", 1)[0]  # create_server's tail
        hint = "pick another --port" if error.errno == errno.EADDRINUSE else "check --host and --port"
        raise StudioError(f"cannot serve on {host}:{port} ({reason}): {hint}") from None


def log_lines() -> None:
    """The studio's own log lines (one per refused request, a trace per real fault) on
    stderr, each saying where it comes from."""
    logger = logging.getLogger("studio.web")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> None:
    """Loopback serving for development; `studio web` has the flags for other hosts."""
    parser = argparse.ArgumentParser(
        description="Serve the Sequence Studio web app (`studio web --help` for the serving flags)."
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default loopback)")
    parser.add_argument("--port", type=int, default=7860)
    args = parser.parse_args(argv)
    try:
        launch(args.host, args.port)
    except StudioError as error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    main()
