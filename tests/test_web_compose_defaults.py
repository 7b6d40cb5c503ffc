"""The Compose tab offers each music model its corpus's usual tempo and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from web.compose import DEFAULT_TEMPO, KEYS, model_defaults

EXPORT = Path(__file__).resolve().parent.parent / "export"


@pytest.mark.skipif(not (EXPORT / "folk" / "card.json").is_file(), reason="needs export/folk")
def test_folk_starts_at_a_reel_tempo_in_g_major() -> None:
    assert model_defaults("folk") == (120.0, "G major")


@pytest.mark.skipif(not (EXPORT / "songs" / "card.json").is_file(), reason="needs export/songs")
def test_songs_start_at_the_chorale_tempo_in_any_key() -> None:
    """The chorales modulate (scale consistency 0.93): no key mask is offered for them."""
    assert model_defaults("songs") == (96.0, KEYS[0])


def test_no_model_gives_the_tab_defaults() -> None:
    assert model_defaults("no-such-model") == (DEFAULT_TEMPO, KEYS[0])
    assert model_defaults(None) == (DEFAULT_TEMPO, KEYS[0])
