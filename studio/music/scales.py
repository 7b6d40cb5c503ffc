"""Keys and scales for the ``--key`` constraint: ``"C major"``, ``"F# minor"``,
``"D dorian"``, ``"Bb mixolydian"``, ``"A minor pentatonic"``; a bare tonic means major."""

from __future__ import annotations

import re

import numpy as np

from studio.errors import StudioError

# semitones above the tonic, per mode
MODES: dict[str, tuple[int, ...]] = {
    "major": (0, 2, 4, 5, 7, 9, 11),
    "minor": (0, 2, 3, 5, 7, 8, 10),
    "harmonic minor": (0, 2, 3, 5, 7, 8, 11),
    "melodic minor": (0, 2, 3, 5, 7, 9, 11),
    "ionian": (0, 2, 4, 5, 7, 9, 11),
    "dorian": (0, 2, 3, 5, 7, 9, 10),
    "phrygian": (0, 1, 3, 5, 7, 8, 10),
    "lydian": (0, 2, 4, 6, 7, 9, 11),
    "mixolydian": (0, 2, 4, 5, 7, 9, 10),
    "aeolian": (0, 2, 3, 5, 7, 8, 10),
    "locrian": (0, 1, 3, 5, 6, 8, 10),
    "major pentatonic": (0, 2, 4, 7, 9),
    "minor pentatonic": (0, 3, 5, 7, 10),
    "blues": (0, 3, 5, 6, 7, 10),
    "chromatic": tuple(range(12)),
}
TONICS = {"c": 0, "d": 2, "e": 4, "f": 5, "g": 7, "a": 9, "b": 11}
ACCIDENTALS = {"": 0, "#": 1, "♯": 1, "b": -1, "♭": -1, "-": -1, "##": 2, "bb": -2}
_PATTERN = re.compile(r"^\s*([a-g])(##|bb|#|♯|b|♭|-)?\s*(.*?)\s*$", re.IGNORECASE)


def accepted_forms() -> str:
    return (
        "a tonic A-G with optional # or b, then a mode ("
        + ", ".join(MODES)
        + "), e.g. 'C major', 'F# minor', 'D dorian'; a bare tonic means major"
    )


def parse_key(text: str) -> tuple[int, str]:
    """``(tonic pitch class, mode)`` of a key name; StudioError lists the accepted forms."""
    match = _PATTERN.match(text or "")
    mode = re.sub(r"[\s_-]+", " ", match.group(3).lower()).strip() if match else ""
    mode = {"": "major", "maj": "major", "min": "minor", "m": "minor"}.get(mode, mode)
    if not match or mode not in MODES:
        raise StudioError(f"unknown key {text!r}: use {accepted_forms()}")
    tonic = (TONICS[match.group(1).lower()] + ACCIDENTALS[match.group(2) or ""]) % 12
    return tonic, mode


def pitch_class_mask(text: str) -> np.ndarray:
    """Bool [12]: True for the pitch classes of the scale named by ``text``."""
    tonic, mode = parse_key(text)
    mask = np.zeros(12, dtype=bool)
    mask[[(tonic + step) % 12 for step in MODES[mode]]] = True
    return mask
