"""What every tab shares: actions whose errors stay on the page, the bundle pickers,
per-request output folders, seeds and recipes.

Nothing here holds state at import time; :class:`OutputFolders` is created by
``build_app`` and handed to the tabs that write files.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import re
import secrets
import shutil
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path

import gradio as gr

from studio.bundle import CARD, Bundle, resolve, search_path
from studio.confine import confine, is_plain_name, pick, shown
from studio.domains import Medium, domain_class
from studio.errors import StudioError
from studio.limits import SampleLimits

log = logging.getLogger("studio.web")

MAX_SEED = 2**31 - 1  # the dice's range; any seed of 0 or more is accepted
# what one request may ask of this shared machine (the CLI has no such limits)
LIMITS = SampleLimits(max_length=2000, max_beams=8, max_bars=64, max_text=200)
# requests of /write, /compose and /handwrite that run at once: they share one model call
# per step (studio.serve.Batcher), so 20 users are served together, not queued
SAMPLING_CONCURRENCY = 24
OUTPUT_MAX_AGE_S = 3600  # request folders older than this are swept away
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,47}$")


# --- errors -----------------------------------------------------------------------


def describe(error: Exception, where: str) -> str:
    """The one sentence a user sees for ``error``, logged once: a user's mistake (a
    StudioError, a ``gr.Error``) as one line, anything else, our bug, with its trace."""
    if isinstance(error, gr.Error):
        message = str(error.message)
    elif isinstance(error, StudioError):
        message = str(error)
    else:
        log.exception("%s: unexpected error", where)
        return f"internal error ({type(error).__name__}); the server log has the details"
    log.warning("%s refused: %s", where, message)
    return message


def _as_gradio_error(error: Exception, where: str = "web handler") -> gr.Error:
    # Gradio prints a trace for every gr.Error unless told not to: one line is logged here
    return gr.Error(describe(error, where), print_exception=False)


def user_errors(handler: Callable, where: str | None = None) -> Callable:
    """Wrap a handler (plain or generator) so every failure reaches the caller as a
    ``gr.Error`` with one clear sentence, never a stack trace (logged as one line)."""
    where = where or handler.__name__
    if inspect.isgeneratorfunction(handler):

        @functools.wraps(handler)
        def stream(*args, **kwargs):
            try:
                yield from handler(*args, **kwargs)
            except Exception as error:
                raise _as_gradio_error(error, where) from None

        return stream

    @functools.wraps(handler)
    def call(*args, **kwargs):
        try:
            return handler(*args, **kwargs)
        except Exception as error:
            raise _as_gradio_error(error, where) from None

    return call


@contextlib.contextmanager
def named_as_uploaded(names: dict[str, str]):
    """Inside, a StudioError that names a server copy of an upload (a key of ``names``)
    names the user's own file (its value) instead."""
    try:
        yield
    except StudioError as error:
        message = str(error)
        for server, shown_name in names.items():
            message = message.replace(server, shown_name)
        raise StudioError(message) from None


def error_box(tab: str) -> gr.Markdown:
    """Where a tab's last failure stays, beside its action button, until the next action."""
    return gr.Markdown(
        visible=False, elem_id=f"{tab}-error", elem_classes=["studio-error"], label="Error", show_label=False
    )


def _shown_on_page(handler: Callable, count: int, page: Callable, where: str) -> Callable:
    """``handler`` for the page: each result through ``page`` plus a hidden error box;
    a failure clears the ``count`` outputs (nothing stale stays on screen) and shows its
    one sentence in the box."""

    def failed(error: Exception) -> tuple:
        return (*[None] * count, gr.update(value=f"**Error:** {describe(error, where)}", visible=True))

    if inspect.isgeneratorfunction(handler):

        @functools.wraps(handler)
        def stream(*args, **kwargs):
            try:
                for values in handler(*args, **kwargs):
                    yield (*page(values), gr.update(visible=False))
            except Exception as error:
                yield failed(error)

        return stream

    @functools.wraps(handler)
    def call(*args, **kwargs):
        try:
            return (*page(handler(*args, **kwargs)), gr.update(visible=False))
        except Exception as error:
            return failed(error)

    return call


def _as_tuple(values) -> tuple:
    return values if isinstance(values, tuple) else (values,)


def action(
    trigger,
    handler: Callable,
    *,
    inputs,
    outputs: list,
    error: gr.Markdown,
    api_name: str,
    api: Callable = _as_tuple,
    page: Callable = _as_tuple,
    **options,
):
    """Bind ``handler`` (plain or generator) as what ``trigger`` (a button, or a list of
    events such as ``[button.click, picker.input]``) does, twice.

    On the page, a trigger empties ``error`` at once, then runs ``handler``; each result
    goes through ``page`` (one value per output) and a failure clears the outputs and
    stays in ``error`` until the next click.  For API clients, ``/api_name`` runs the
    same handler from a hidden button, each result through ``api``, and a failure is a
    ``gr.Error``.  ``options`` (concurrency, progress) apply to both.  Returns the page's
    event, for chaining."""

    def api_results(*args, **kwargs):
        if inspect.isgeneratorfunction(handler):
            return (api(values) for values in handler(*args, **kwargs))
        return api(handler(*args, **kwargs))

    if inspect.isgeneratorfunction(handler):

        @functools.wraps(handler)
        def for_api(*args, **kwargs):
            yield from api_results(*args, **kwargs)
    else:

        @functools.wraps(handler)
        def for_api(*args, **kwargs):
            return api_results(*args, **kwargs)

    hidden = gr.Button(visible=False, elem_id=f"{api_name}-api")
    hidden.click(user_errors(for_api, f"/{api_name}"), inputs=inputs, outputs=outputs, api_name=api_name, **options)
    triggers = [trigger.click] if isinstance(trigger, gr.Button) else list(trigger)
    cleared = gr.on(
        triggers,
        lambda: gr.update(value="", visible=False),
        outputs=error,
        queue=False,
        api_visibility="private",
        show_progress="hidden",
    )
    return cleared.then(
        _shown_on_page(handler, len(outputs), page, f"/{api_name}"),
        inputs=inputs,
        outputs=[*outputs, error],
        api_visibility="private",
        **options,
    )


# --- bundles ----------------------------------------------------------------------


def studio_bundles() -> dict[str, Path]:
    """The studio's list of bundles: name -> resolved folder, for each folder on the
    bundle search path whose folder and card stay inside their root (a link out of
    ``export/`` is left out).  A name is taken by the first root that has it, as
    :func:`studio.bundle.resolve` takes it."""
    found: dict[str, Path] = {}
    for root in search_path():
        if not root.is_dir():
            continue
        for entry in sorted(root.iterdir()):
            if entry.name in found or not is_plain_name(entry.name):
                continue
            try:
                folder = confine(root, entry.name, what="model")
                card = confine(folder, CARD, what="model card")
            except StudioError:
                continue
            if card.is_file():
                found[entry.name] = folder
    return found


def listed_bundle(model: object, what: str = "model") -> Bundle:
    """The bundle a web request names: ``model`` must be a name in
    :func:`studio_bundles` (never a path), and every graph its card names must lie in
    its folder.  StudioError otherwise, before any graph is read."""
    folder = pick(model, studio_bundles(), what)
    bundle = Bundle.load(folder)
    for graph in bundle.card["graphs"].values():
        confine(folder, *str(graph).split("/"), what=f"{model} graph")
    return bundle


def bundle_domain_class(card_path: Path):
    """The domain class a bundle's card names (no weights loaded), or None if unreadable."""
    import json

    try:
        return domain_class(json.loads(card_path.read_text(encoding="utf-8"))["domain"]["name"])
    except (OSError, ValueError, KeyError, TypeError, StudioError):
        return None


# What each tab can drive, by the domain's declared medium (never by its name).
def writes_text(cls) -> bool:
    return cls.medium is Medium.TEXT


def writes_music(cls) -> bool:
    return cls.medium is Medium.MUSIC


def draws_strokes(cls) -> bool:
    return cls.medium is Medium.INK


def bundles_for(accepts: Callable[[type], bool]) -> list[str]:
    """Names of the bundles on the search path whose domain ``accepts`` says yes to."""
    names = []
    for name, path in studio_bundles().items():
        cls = bundle_domain_class(path / CARD)
        if cls is not None and accepts(cls):
            names.append(name)
    return names


def preferred(names: list[str], first_choice: str) -> str | None:
    """``first_choice`` when it is available, else the first name, else None."""
    if first_choice in names:
        return first_choice
    return names[0] if names else None


def choices_update(accepts: Callable[[type], bool]):
    """Fresh choices for a picker, its value untouched (the user may be choosing)."""
    return gr.update(choices=bundles_for(accepts))


def picker_update(accepts: Callable[[type], bool], current: str | None, default: str):
    """Fresh choices for a picker; its value changes only when ``current`` is gone, so a
    refresh that answers late never undoes what the user picked meanwhile."""
    names = bundles_for(accepts)
    if current in names:
        return gr.update(choices=names)
    return gr.update(choices=names, value=preferred(names, default))


def missing_notice(names: Iterable[str], what: str, shipped: str) -> str:
    """The line a tab shows when it has no bundle to work with."""
    if list(names):
        return ""
    return (
        f"**No {what} model found.** Train one in the *Train* tab, or run `make models` "
        f"to build the shipped `{shipped}` model; bundles are looked up in `$STUDIO_MODELS` "
        f"and `./export`."
    )


def require_model(model: str | None, what: str) -> str:
    """``model`` when it names a bundle in the studio's list that the library's own
    name lookup (which the recipe repeats) finds at the same place."""
    if not model:
        raise StudioError(f"pick a {what} model first (none is available: train one in the Train tab)")
    folder = listed_bundle(model).path
    try:
        found = resolve(model).resolve()
    except StudioError:
        found = None
    if found != folder:
        raise StudioError(
            f"model {shown(model)} is shadowed by a folder of that name where the server runs: rename that folder"
        )
    return str(model)


def upload_folder() -> Path:
    """Where Gradio keeps uploaded files: the only place an upload's path may point."""
    from gradio.utils import get_upload_folder

    return Path(get_upload_folder())


# --- seeds and numbers --------------------------------------------------------------


def new_seed() -> int:
    return secrets.randbelow(MAX_SEED)


def as_float(value, name: str) -> float:
    """A number box's value; an empty box is refused, never read as 0."""
    if value is None or (isinstance(value, str) and not value.strip()):
        raise StudioError(f"give a number for {name} (the box is empty)")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise StudioError(f"{name} must be a number (got {value!r})") from None
    if number != number or number in (float("inf"), float("-inf")):
        raise StudioError(f"{name} must be a finite number (got {value!r})")
    return number


def as_int(value, name: str) -> int:
    """Number boxes hand over floats (40.0); recipes need ``40``.  2.5 is refused, never
    rounded."""
    number = as_float(value, name)
    if number != int(number):
        raise StudioError(f"{name} must be a whole number (got {value!r})")
    return int(number)


# --- output folders -----------------------------------------------------------------


class OutputFolders:
    """One fresh folder per request under ``root``; folders older than an hour go away
    when the next one is made (Gradio copies what it serves into its own cache)."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def new(self, kind: str) -> Path:
        self.sweep()
        folder = self.root / f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}"
        folder.mkdir()
        return folder

    def keep(self, source: str | Path, subfolder: str, suffix: str) -> Path:
        """Copy an uploaded file to ``root/subfolder/<sha256 prefix><suffix>``: a stable,
        content-named path that a recipe can point at."""
        import hashlib

        source = Path(source)
        digest = hashlib.sha256(source.read_bytes()).hexdigest()[:16]
        target = self.root / subfolder / f"{digest}{suffix}"
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
        return target

    def sweep(self) -> None:
        cutoff = time.time() - OUTPUT_MAX_AGE_S
        for folder in self.root.iterdir():
            try:  # another request's sweep may remove a folder between listing and stat
                old = folder.is_dir() and "-" in folder.name and folder.stat().st_mtime < cutoff
            except FileNotFoundError:
                continue
            if old:
                shutil.rmtree(folder, ignore_errors=True)
