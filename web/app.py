"""Sequence Studio in the browser: Write, Compose, Handwrite, Look inside, Train, Models.

``build_app()`` builds the Gradio Blocks inside a function (nothing happens at import);
``launch(host, port)`` serves it behind a bounded queue, on 127.0.0.1 unless told
otherwise, never shared, analytics off, fonts from the system (no request leaves the
machine).  Every action is also a named API endpoint for ``gradio_client``:
``/write``, ``/compose``, ``/handwrite``, ``/inspect``, ``/train``, ``/cancel_training``,
``/models``, ``/model_card``.  All of them call the same library functions as the CLI.

    python -m web.app --port 7860        # or: studio web
"""

from __future__ import annotations

import argparse
import atexit
import os
import signal
import tempfile
import threading
from pathlib import Path

ASSETS = Path(__file__).resolve().parent / "assets"
QUEUE_SIZE = 64  # requests waiting beyond this are turned away with "queue full"
DEFAULT_CONCURRENCY = 2  # events without their own limit: the machine has few cores
MAX_UPLOAD = "5mb"  # primer MIDI files and training texts
CACHE_SWEEP = (3600, 3600)  # Gradio's file cache: every hour, drop files older than an hour
SYSTEM_FONTS = ("ui-sans-serif", "system-ui", "-apple-system", "Segoe UI", "Roboto", "sans-serif")
MONO_FONTS = ("ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "monospace")


def theme():
    """A Gradio theme on system fonts only: no web-font downloads from anywhere."""
    import gradio as gr

    return gr.themes.Soft(primary_hue="indigo", font=list(SYSTEM_FONTS), font_mono=list(MONO_FONTS))


def build_app(jobs=None):
    """The studio's Blocks.  ``jobs`` (a :class:`web.training.TrainingJobs`) runs the
    Train tab's subprocesses; by default one working in the current folder (``runs/``,
    ``export/``, ``corpora/``)."""
    import gradio as gr

    from . import cells, compose, handwrite, models, training, write
    from .common import OutputFolders, missing_notice, picker_update

    outputs = OutputFolders(Path(tempfile.gettempdir()) / "studio-web")
    jobs = jobs or training.TrainingJobs(Path.cwd())

    with gr.Blocks(title="Sequence Studio", analytics_enabled=False, delete_cache=CACHE_SWEEP) as demo:
        gr.Markdown("# Sequence Studio\nRecurrent models of prose, code, music and handwriting. "
                    "Every result comes with the `studio` command that reproduces it.")
        tabs = []
        with gr.Tabs():
            with gr.Tab("Write", id="write"):
                tabs.append(write.build_tab(outputs))
            with gr.Tab("Compose", id="compose"):
                tabs.append(compose.build_tab(outputs))
            with gr.Tab("Handwrite", id="handwrite"):
                tabs.append(handwrite.build_tab(outputs))
            with gr.Tab("Look inside", id="inspect"):
                tabs.append(cells.build_tab())
            with gr.Tab("Train", id="train"):
                train_event = training.build_tab(jobs)
            with gr.Tab("Models", id="models"):
                model_list = models.build_tab()

        pickers = [tab["model"] for tab in tabs]
        notices = [tab["notice"] for tab in tabs]

        def refresh(*current):
            """New bundles (a finished training run, a copied export) show up everywhere."""
            updates = [picker_update(tab["accepts"], value, tab["default"])
                       for tab, value in zip(tabs, current[:len(tabs)])]
            texts = [missing_notice(update["choices"], tab["what"], tab["default"])
                     for tab, update in zip(tabs, updates)]
            rows = models.card_rows()
            names = [row[0] for row in rows]
            chosen = current[-1] if current[-1] in names else (names[0] if names else None)
            return (*updates, *texts, rows, gr.update(choices=names, value=chosen))

        refresh_io = dict(fn=refresh, inputs=[*pickers, model_list["picker"]],
                          outputs=[*pickers, *notices, model_list["table"], model_list["picker"]],
                          api_visibility="private", show_progress="hidden")
        demo.load(**refresh_io)
        train_event.then(**refresh_io)
    return demo


def launch(host: str = "127.0.0.1", port: int = 7860, *, prevent_thread_lock: bool = False):
    """Serve the studio on ``host:port`` (blocks unless ``prevent_thread_lock``)."""
    from .training import TrainingJobs

    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    jobs = TrainingJobs(Path.cwd())
    atexit.register(jobs.shutdown)  # a training run does not outlive the server
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupt)  # `kill` stops like Ctrl-C: cleanly
    demo = build_app(jobs)
    demo.queue(max_size=QUEUE_SIZE, default_concurrency_limit=DEFAULT_CONCURRENCY)
    return demo.launch(server_name=host, server_port=port, share=False, max_file_size=MAX_UPLOAD,
                       theme=theme(), css_paths=[ASSETS / "studio.css"], ssr_mode=False,
                       show_error=False, footer_links=["api", "settings"], mcp_server=False,
                       pwa=False, enable_monitoring=False, prevent_thread_lock=prevent_thread_lock)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve the Sequence Studio web app.")
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default loopback)")
    parser.add_argument("--port", type=int, default=7860)
    args = parser.parse_args(argv)
    launch(args.host, args.port)


if __name__ == "__main__":
    main()
