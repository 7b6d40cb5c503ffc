"""`studio export-web MODEL --out DIR`: a static site that samples a bundle in the
visitor's browser (onnxruntime-web), with no request to any other host.  Text models by
characters get the text page; strokes models (handwriting, doodles) the drawing page.

The site::

    DIR/index.html               the page (form, streaming output, URL parameters)
    DIR/page.js                  the page's logic (strokes-page.js for a strokes model)
    DIR/studio-sampler.js        the sampler: rng, rules, draw (web/static/studio-sampler.js)
    DIR/studio-strokes.js        strokes models only: the mixture sampler and the SVG
    DIR/onnxruntime-web/         ort.wasm.min.js + ort-wasm-simd-threaded.{mjs,wasm}
    DIR/model/card.json          the bundle's card and its graph(s)
    DIR/studio-export.json       what was written (files, bytes, sha256)

The site is built in a temporary folder beside DIR and renamed into place when complete,
so a failure leaves nothing half written.  ``--force`` replaces only an earlier export
(a folder holding studio-export.json) or an empty folder, never other files.
"""

from __future__ import annotations

import hashlib
import html
import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .bundle import CARD, Bundle
from .confine import check_name
from .errors import StudioError

# How the tests and `scripts/bench_browser.py` drive Debian's Chromium: offline, no
# sandbox (containers), nothing fetched in the background.
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
STATIC = Path(__file__).resolve().parent.parent / "web" / "static"
VENDOR = STATIC / "vendor" / "onnxruntime-web"
ORT_FILES = ("ort.wasm.min.js", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")
MANIFEST = "studio-export.json"
BROWSER_DOMAINS = ("chars",)  # what studio-sampler.js can encode and decode
# kind -> (page template, the scripts beside it)
SITES = {
    "text": (STATIC / "site" / "index.html", (STATIC / "site" / "page.js", STATIC / "studio-sampler.js")),
    "strokes": (
        STATIC / "site" / "strokes.html",
        (STATIC / "site" / "strokes-page.js", STATIC / "studio-sampler.js", STATIC / "studio-strokes.js"),
    ),
}


@dataclass(frozen=True)
class WebExport:
    """What :func:`export_web` wrote: the folder, the files (relative name -> bytes)."""

    folder: Path
    files: dict[str, int]

    @property
    def total_bytes(self) -> int:
        return sum(self.files.values())


def vendor_files() -> list[Path]:
    """The fetched onnxruntime-web files; StudioError saying how to fetch them when absent."""
    missing = [name for name in ORT_FILES if not (VENDOR / name).is_file()]
    if missing:
        raise StudioError(
            f"onnxruntime-web is not fetched ({', '.join(missing)} missing in {VENDOR}): "
            "run `make install` (or python3 scripts/fetch_onnxruntime_web.py)"
        )
    return [VENDOR / name for name in ORT_FILES]


def check_browser_bundle(bundle: Bundle) -> None:
    """StudioError unless the browser sampler handles ``bundle`` (a text model by characters)."""
    domain = bundle.card.get("domain", {}).get("name")
    if bundle.head not in (None, "categorical") or domain not in BROWSER_DOMAINS:
        raise StudioError(
            f"{bundle.name} is a {domain} model: the browser samples text models by characters "
            "(prose, code, markdown or your own); pick one of those"
        )


def site_kind(bundle: Bundle) -> str:
    """ "text" or "strokes": which page samples ``bundle``; StudioError for the others."""
    if bundle.head == "mixture" and bundle.card.get("domain", {}).get("name") == "strokes":
        if "fp32" not in bundle.card["graphs"]:
            raise StudioError(f"{bundle.name} has no fp32 graph: the browser draws from fp32 graphs; re-export it")
        return "strokes"
    domain = bundle.card.get("domain", {}).get("name")
    if bundle.head not in (None, "categorical") or domain not in BROWSER_DOMAINS:
        raise StudioError(
            f"{bundle.name} is a {domain} model: the browser samples text models by characters "
            "(prose, code, markdown) and strokes models (handwriting, doodles); pick one of those"
        )
    return "text"


def graph_files(bundle: Bundle) -> dict[str, Path]:
    """precision -> graph file of ``bundle``, each name from the card checked to be a
    plain file name inside the bundle."""
    return {
        precision: bundle.path / check_name(name, f"graph file of {bundle.name}")
        for precision, name in bundle.card["graphs"].items()
    }


def _check_target(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise StudioError(f"{out} is a file: give a folder for --out")
    if out.is_dir() and any(out.iterdir()):
        if not force:
            raise StudioError(f"{out} is not empty: choose a new folder, or add --force to replace an earlier export")
        if not (out / MANIFEST).is_file():
            raise StudioError(
                f"{out} holds files that are not a studio web export: --force replaces only an earlier "
                "export; choose a new or empty folder"
            )
    if not out.parent.is_dir():
        raise StudioError(f"folder {out.parent} does not exist: create it or choose another --out")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def export_web(model: str | Path, out: Path, *, force: bool = False) -> WebExport:
    """Write the static site for ``model`` (a bundle name or path) into ``out``."""
    bundle = Bundle.load(model)
    kind = site_kind(bundle)
    template, scripts = SITES[kind]
    graphs = graph_files(bundle)
    if kind == "strokes":
        graphs = {"fp32": graphs["fp32"]}
    vendor = vendor_files()
    out = Path(out).absolute()
    _check_target(out, force)
    try:
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    except OSError as error:
        raise StudioError(f"cannot write in {out.parent} ({error.strerror}): choose another --out") from None
    staging.chmod(0o755)  # mkdtemp makes it private; a web server must read the site
    try:
        what = "text" if kind == "text" else "pen-stroke"
        title = html.escape(f"{bundle.name}: a recurrent {what} model")
        page = template.read_text(encoding="utf-8")
        prime_hint = "ROMEO:" if bundle.name == "prose" else ""
        (staging / "index.html").write_text(
            page.replace("__TITLE__", title).replace("__PLACEHOLDER__", html.escape(prime_hint)), encoding="utf-8"
        )
        for source in scripts:
            shutil.copyfile(source, staging / source.name)
        (staging / "onnxruntime-web").mkdir()
        for source in vendor:
            shutil.copyfile(source, staging / "onnxruntime-web" / source.name)
        (staging / "model").mkdir()
        shutil.copyfile(bundle.path / CARD, staging / "model" / CARD)
        for source in graphs.values():
            shutil.copyfile(source, staging / "model" / source.name)
        files = {
            str(path.relative_to(staging)): path.stat().st_size for path in sorted(staging.rglob("*")) if path.is_file()
        }
        manifest = {
            "model": bundle.name,
            "page": kind,
            "graphs": {precision: f"model/{path.name}" for precision, path in graphs.items()},
            "onnxruntime_web": json.loads((VENDOR / "VERSION.json").read_text()).get("version")
            if (VENDOR / "VERSION.json").is_file()
            else None,
            "files": {name: {"bytes": size, "sha256": _sha256(staging / name)} for name, size in files.items()},
        }
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
        files[MANIFEST] = (staging / MANIFEST).stat().st_size
        if out.exists():
            shutil.rmtree(out)  # empty, or an earlier export (checked above)
        staging.rename(out)
    except OSError as error:  # the disk filled up, a file vanished ...: nothing is left behind
        shutil.rmtree(staging, ignore_errors=True)
        raise StudioError(f"cannot write the site to {out} ({error.strerror}); nothing was written") from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return WebExport(out, files)
