"""The Models tab: every bundle in the studio's list with its card's figures.

Bundles come from :func:`web.common.studio_bundles` and cards from
:func:`web.common.listed_bundle`, so a card is shown only for a listed name; the path
column says where a bundle lives relative to the working folder or the package, not
where the server's folders are.
"""

from __future__ import annotations

import json
from pathlib import Path

import gradio as gr

from studio.bundle import PACKAGE_ROOT
from studio.errors import StudioError

from .common import listed_bundle, studio_bundles, user_errors

COLUMNS = ["name", "domain", "size MB", "parameters", "corpus", "validation", "unit", "steps",
           "train minutes", "path"]


def shown_path(folder: Path) -> str:
    """``folder`` relative to the working folder or the package when it is in one
    (``export/prose``), else under ``$STUDIO_MODELS``."""
    for base in (Path.cwd(), PACKAGE_ROOT):
        base = base.resolve()
        if folder.is_relative_to(base):
            return str(folder.relative_to(base))
    return f"$STUDIO_MODELS/{folder.name}"


def card_rows() -> list[list]:
    """One row per bundle (damaged ones say so in the validation column)."""
    rows = []
    for name, path in studio_bundles().items():
        try:
            bundle = listed_bundle(name)
        except StudioError as error:
            message = str(error).replace(str(path), shown_path(path))
            rows.append([name, "damaged", None, None, "", message, "", None, None, shown_path(path)])
            continue
        card, metrics = bundle.card, bundle.card.get("metrics", {})
        validation, unit = None, ""
        for key in sorted(metrics):
            if key.startswith("val_nats_per_"):
                validation, unit = metrics[key], "nats/" + key.removeprefix("val_nats_per_")
                break
        corpus = card.get("corpus") or {}
        rows.append([name, card["domain"]["name"], round(bundle.size_bytes() / 1e6, 2),
                     metrics.get("parameters"), str(corpus.get("path") or corpus.get("name") or ""),
                     validation, unit, metrics.get("steps"), metrics.get("train_minutes"),
                     shown_path(path)])
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


def build_tab() -> dict:
    rows = card_rows()
    table = gr.Dataframe(rows, headers=COLUMNS, label="Model bundles", interactive=False,
                         elem_id="models-table")
    with gr.Row():
        refresh = gr.Button("Refresh", scale=1)
        names = [row[0] for row in rows]
        picker = gr.Dropdown(names, value=names[0] if names else None, label="Card",
                             allow_custom_value=True, scale=3, elem_id="models-card-picker")
    first = listed_bundle(rows[0][0]).card if rows and rows[0][1] != "damaged" else None
    card = gr.JSON(card_summary(first) if first else None, label="Card", elem_id="models-card")
    refresh.click(models, outputs=table, api_name="models")
    picker.change(model_card, inputs=picker, outputs=card, api_name="model_card")
    return {"table": table, "picker": picker}
