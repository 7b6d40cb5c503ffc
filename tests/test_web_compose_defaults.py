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


@pytest.mark.skipif(
    not all((EXPORT / name / "card.json").is_file() for name in ("songs", "folk")), reason="needs export/songs and folk"
)
def test_time_signatures_offered_are_the_models_own() -> None:
    """The chorales keep 3/4 and 4/4 bars; O'Neill's tunes 2/4, 6/8, 2/2 and 9/8; each
    bar length is offered under its other name too (3/4 beside 6/8, 4/4 beside 2/2)."""
    from web.compose import ANY_METRE, metre_choices, model_changed

    assert metre_choices("songs") == [ANY_METRE, "3/4", "4/4", "6/8", "2/2"]
    assert metre_choices("folk") == [ANY_METRE, "2/4", "6/8", "2/2", "9/8", "3/4", "4/4"]
    assert metre_choices("no-such-model") == metre_choices(None) == [ANY_METRE]
    tempo, key, metre = model_changed("folk")
    assert (tempo, key) == (120.0, "G major")
    assert metre.value == ANY_METRE and [choice[0] for choice in metre.choices] == metre_choices("folk")
