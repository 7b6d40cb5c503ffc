"""The Models tab: every bundle in the studio's list with its card's figures, what its
quality figure means, and a short sample of what it makes.

Bundles come from :func:`web.common.studio_bundles` and cards from
:func:`web.common.listed_bundle`, so a card is shown only for a listed name; the path
column says where a bundle lives relative to the working folder or the package, not
where the server's folders are.  The figures' wording and the samples come from
:mod:`studio.previews`.
"""

from __future__ import annotations

import json
from pathlib import Path

import gradio as gr

from studio.bundle import PACKAGE_ROOT
from studio.errors import StudioError
from studio.previews import preview, quality

from .common import OutputFolders, action, error_box, listed_bundle, studio_bundles, user_errors

COLUMNS = ["name", "domain", "quality", "size MB", "parameters", "steps", "train minutes", "corpus", "path"]
WIDTHS = ["12%", "8%", "18%", "7%", "9%", "6%", "7%", "15%", "18%"]  # the path column is never clipped
LEGEND = (
    "**quality** says how well a model predicts data it never trained on (lower is better): "
    "bits per character for text, per event for music, nats per pen point for strokes. "
    "Pick a model below for what its figure means and a short sample of what it makes."
)


def shown_path(folder: Path) -> str:
    """``folder`` relative to the working folder or the package when it is in one
    (``export/prose``), else under ``$STUDIO_MODELS``."""
    for base in (Path.cwd(), PACKAGE_ROOT):
        base = base.resolve()
        if folder.is_relative_to(base):
            return str(folder.relative_to(base))
    return f"$STUDIO_MODELS/{folder.name}"


def card_rows() -> list[list]:
    """One row per bundle: :data:`COLUMNS`, the quality as words ("2.09 bits per
    character"), a corpus outside the studio's folders by its last part only; a damaged
    bundle says what is wrong in its quality column."""
    rows = []
    for name, path in studio_bundles().items():
        try:
            bundle = listed_bundle(name)
            figure = quality(bundle).figure
        except StudioError as error:
            message = str(error).replace(str(path), shown_path(path))
            rows.append([name, "damaged", message, None, None, None, None, "", shown_path(path)])
            continue
        card, metrics = bundle.card, bundle.card.get("metrics", {})
        corpus = str((card.get("corpus") or {}).get("path") or (card.get("corpus") or {}).get("name") or "")
        rows.append(
            [
                name,
                card["domain"]["name"],
                figure,
                round(bundle.size_bytes() / 1e6, 2),
                metrics.get("parameters"),
                metrics.get("steps"),
                metrics.get("train_minutes"),
                Path(corpus).name if Path(corpus).is_absolute() else corpus,
                shown_path(path),
            ]
        )
    return rows


def card_summary(card: dict) -> dict:
    """A card without its bulky arrays (vocabularies, stored styles) and without server
    paths (an absolute corpus path shows as its last part), for display."""

    def shrink(value):
        if isinstance(value, dict):  # a "path" key would make API clients fetch it as a file
            return {("folder" if key == "path" else key): shrink(item) for key, item in value.items()}
        if isinstance(value, list) and len(json.dumps(value)) > 300:
            return f"[{len(value)} items]"
        if isinstance(value, str) and Path(value).is_absolute():
            return Path(value).name
        return value

    return shrink(card)


@user_errors
def models() -> list[list]:
    """The bundle table."""
    return card_rows()


@user_errors
def model_card(model: str) -> dict:
    """One bundle's card, bulky arrays summarised."""
    if not model:
        raise StudioError("pick a model to see its card")
    return card_summary(listed_bundle(model).card)


def make_model_preview(outputs: OutputFolders):
    def model_preview(model: str):
        """What ``model``'s quality figure means, and a short seeded sample of it:
        returns (about, sample text, sample picture or None, recipe)."""
        if not model:
            raise StudioError("pick a model to preview")
        bundle = listed_bundle(model)
        measured = quality(bundle)
        about = (
            f"**{model}**: {measured.figure}. {measured.gloss}"
            if measured.figure
            else f"**{model}**: its card records no held-out score."
        )
        made = preview(bundle.path, outputs.new("preview"))
        return about, made.text, str(made.image) if made.image else None, made.command

    return model_preview


def build_tab(outputs: OutputFolders) -> dict:
    rows = card_rows()
    gr.Markdown(LEGEND, elem_id="models-legend")
    table = gr.Dataframe(
        rows,
        headers=COLUMNS,
        label="Model bundles",
        interactive=False,
        wrap=True,
        column_widths=WIDTHS,
        elem_id="models-table",
    )
    with gr.Row():
        refresh = gr.Button("Refresh", scale=1)
        names = [row[0] for row in rows]
        picker = gr.Dropdown(
            names,
            value=names[0] if names else None,
            label="Card",
            allow_custom_value=True,
            scale=2,
            elem_id="models-card-picker",
        )
        show = gr.Button("Show a sample", variant="primary", scale=1, elem_id="models-preview-button")
    error = error_box("models")
    about = gr.Markdown(label="About", elem_id="models-about")
    with gr.Row():
        sample_text = gr.Textbox(label="Sample", lines=6, elem_id="models-sample")
        sample_image = gr.Image(label="Sample picture", type="filepath", elem_id="models-sample-image")
    sample_recipe = gr.Textbox(label="Recipe (makes the same sample)", buttons=["copy"], elem_id="models-sample-recipe")
    first = listed_bundle(rows[0][0]).card if rows and rows[0][1] != "damaged" else None
    card = gr.JSON(card_summary(first) if first else None, label="Card", elem_id="models-card")
    refresh.click(models, outputs=table, api_name="models")
    picker.change(model_card, inputs=picker, outputs=card, api_name="model_card")
    action(
        [show.click, picker.input],
        make_model_preview(outputs),
        inputs=picker,
        outputs=[about, sample_text, sample_image, sample_recipe],
        error=error,
        api_name="model_preview",
        concurrency_limit=2,
        concurrency_id="render",
    )
    return {"table": table, "picker": picker}
