"""The "Run in my browser" switch of the Write tab: the server checks the settings and
hands the page the bundle's card and fp32 graph once; the visitor's browser then samples
with onnxruntime-web and the sampler of ``studio export-web``
(web/static/studio-sampler.js), streaming into the same text box.

What the server serves for it, and nothing else: the three onnxruntime-web files and the
two studio scripts (by their fixed paths, :data:`SERVED`), and copies of the chosen
bundle's card and graph that Gradio serves like any output file.  Bundle names go
through the tab's own :func:`~web.common.require_model`, graph names through
:func:`studio.confine.check_name`.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import gradio as gr

from studio.bundle import CARD, Bundle
from studio.errors import StudioError
from studio.handwriting.render import parse_color
from studio.sampling.settings import command_line
from studio.webexport import ORT_FILES, STATIC, VENDOR, check_browser_bundle, graph_files, vendor_files

from .common import OutputFolders, describe

SAMPLER = STATIC / "studio-sampler.js"
STROKES = STATIC / "studio-strokes.js"
GLUE = STATIC / "browser-write.js"
SCRIPTS = {"sampler": SAMPLER, "strokes": STROKES, "glue": GLUE}
SERVED = (*(VENDOR / name for name in ORT_FILES), *SCRIPTS.values())  # ort js, mjs, wasm; the scripts


def serve_static_files() -> None:
    """Let Gradio serve exactly the files in :data:`SERVED` (no folder is opened)."""
    gr.set_static_paths([str(path) for path in SERVED if path.is_file()])


def url_of(path: Path) -> str:
    """The page-relative URL Gradio serves a static file at."""
    return f"gradio_api/file={path}"


def bundle_copy(bundle: Bundle, outputs: OutputFolders) -> tuple[Path, Path]:
    """(card, fp32 graph) copied under ``outputs.root/browser/<digest>/``: a folder the
    studio owns, named by the graph's content, so repeated writes reuse one copy."""
    graph = graph_files(bundle).get("fp32")
    if graph is None:
        raise StudioError(f"{bundle.name} has no fp32 graph: the browser samples fp32 graphs; re-export with fp32")
    stat = graph.stat()
    key = hashlib.sha256(f"{graph.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    folder = outputs.root / "browser" / key
    if not (folder / graph.name).is_file():
        partial = outputs.root / "browser" / f".{key}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        shutil.copyfile(bundle.path / CARD, partial / CARD)
        shutil.copyfile(graph, partial / graph.name)
        shutil.rmtree(folder, ignore_errors=True)
        partial.rename(folder)
    return folder / CARD, folder / graph.name


def _runtime_urls() -> dict:
    vendor = dict(zip(("ort", "mjs", "wasm"), (VENDOR / name for name in ORT_FILES)))
    return {name: url_of(path) for name, path in {**vendor, **SCRIPTS}.items()}


def browser_plan(settings, outputs: OutputFolders) -> tuple[list[str], str]:
    """What the page needs to sample ``settings`` (text) itself: the card and graph files
    and a JSON plan (the settings as the sampler names them, and the recipe)."""
    if settings.num_beams > 1:
        raise StudioError("beam search runs on the server: set Beams to 1 or turn off Run in my browser")
    if settings.best_of > 1:
        raise StudioError(
            "choosing among candidates runs on the server: set Candidates to 1 or turn off Run in my browser"
        )
    vendor_files()
    bundle = Bundle.load(settings.model)
    check_browser_bundle(bundle)
    card, graph = bundle_copy(bundle, outputs)
    plan = {
        "kind": "text",
        "runtime": _runtime_urls(),
        "settings": {
            "prime": settings.prime or "",
            "temperature": settings.temperature,
            "seed": settings.seed,
            "length": settings.length,
            "top_k": settings.top_k,
            "top_p": settings.top_p,
            "repetition_penalty": settings.repetition_penalty,
            "no_repeat_ngram_size": settings.no_repeat_ngram_size,
            "stop": list(settings.stop),
        },
        "recipe": command_line(settings.with_(precision="fp32")),
    }
    return [str(card), str(graph)], json.dumps(plan)


def strokes_plan(settings, outputs: OutputFolders) -> tuple[list[str], str]:
    """As :func:`browser_plan`, for a strokes bundle (handwriting or doodles, no style):
    the recipe is the one that writes the same SVG."""
    if settings.style is not None:
        raise StudioError("stored styles are primed on the server: choose style none or turn off Run in my browser")
    vendor_files()
    bundle = Bundle.load(settings.model)
    if bundle.head != "mixture" or bundle.card.get("domain", {}).get("name") != "strokes":
        raise StudioError(f"{bundle.name} does not draw strokes: pick a handwriting or doodle model")
    card, graph = bundle_copy(bundle, outputs)
    plan = {
        "kind": "strokes",
        "runtime": _runtime_urls(),
        "settings": {"text": settings.text, "bias": settings.bias, "seed": settings.seed, "num": settings.num},
        "stroke_width": settings.stroke_width,
        "color": "#%02x%02x%02x" % parse_color(settings.color),
        "recipe": command_line(settings.with_(precision="fp32"), out=f"{bundle.name}-seed{settings.seed}.svg"),
    }
    return [str(card), str(graph)], json.dumps(plan)


RUN_JS = """
async (files, plan) => {
  const given = JSON.parse(plan);
  const load = (src) => new Promise((resolve, reject) => {
    const script = document.createElement("script");
    script.src = new URL(src, document.baseURI).href;
    script.onload = resolve;
    script.onerror = () => reject(new Error("cannot load " + src));
    document.head.appendChild(script);
  });
  try {
    if (!window.StudioBrowserWrite) {
      for (const name of ["ort", "sampler", "strokes", "glue"]) await load(given.runtime[name]);
    }
    return await window.StudioBrowserWrite.run(files, given);
  } catch (error) {
    const message = "Error (in your browser): " + (error.message || error);
    if (given.kind === "text") return ["", given.recipe, "**" + message + "**"];
    return [message, given.recipe, "", null, null, null];
  }
}
"""


def switch(on: bool):
    """Show the Write button that runs where the switch says; the browser fills the text box."""
    return gr.update(visible=not on), gr.update(visible=bool(on)), gr.update(visible=True), gr.update(visible=False)


def wire(trigger, inputs: list, outputs: list, outputs_folder: OutputFolders, settings_of, kind: str = "text"):
    """Bind ``trigger`` (an in-browser button): ``settings_of(*inputs)`` builds the
    SampleSettings on the server, then the page samples and fills ``outputs``: (text,
    recipe, stats) for text; for strokes (summary, recipe, SVG markup) and the server's PNG,
    GIF and downloads, which it empties (the browser draws the SVG only)."""
    serve_static_files()
    plan_of = browser_plan if kind == "text" else strokes_plan
    files = gr.File(file_count="multiple", visible=False)
    plan = gr.Textbox(visible=False)

    def prepare(*values):
        try:
            return plan_of(settings_of(*values), outputs_folder)
        except Exception as error:
            raise gr.Error(describe(error, "run in the browser")) from None

    trigger.click(
        prepare, inputs=inputs, outputs=[files, plan], api_visibility="private", show_progress="hidden"
    ).success(None, inputs=[files, plan], outputs=outputs, js=RUN_JS, api_visibility="private")
