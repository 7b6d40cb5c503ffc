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


# a mode's tonic relative to the major scale with the same notes ("D dorian" is C major)
_MAJOR_DEGREE = {"ionian": 0, "dorian": 2, "phrygian": 4, "lydian": 5, "mixolydian": 7, "locrian": 11}
_AS_MINOR = ("minor", "aeolian", "harmonic minor", "melodic minor", "minor pentatonic", "blues")
MAJOR_NAMES = ("C", "Db", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
MINOR_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "G#", "A", "Bb", "B")


def major_or_minor(tonic: int, mode: str) -> tuple[int, str] | None:
    """The major or minor key that best stands for ``tonic`` in ``mode`` (church modes by
    their parent major scale), or None for the chromatic scale."""
    mode = mode.lower()
    if mode in ("major", "major pentatonic"):
        return tonic % 12, "major"
    if mode in _AS_MINOR:
        return tonic % 12, "minor"
    if mode in _MAJOR_DEGREE:
        return (tonic - _MAJOR_DEGREE[mode]) % 12, "major"
    return None


def key_name(tonic: int, mode: str) -> str:
    """``"F# minor"``-style name of a major or minor key."""
    return f"{(MAJOR_NAMES if mode == 'major' else MINOR_NAMES)[tonic % 12]} {mode}"


def midi_key_name(tonic: int, mode: str) -> str:
    """The spelling MIDI key-signature events use: ``"Bb"``, ``"F#m"``."""
    name = (MAJOR_NAMES if mode == "major" else MINOR_NAMES)[tonic % 12]
    return name + ("m" if mode == "minor" else "")
