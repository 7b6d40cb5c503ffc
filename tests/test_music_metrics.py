"""MusPy-style metrics: hand-computed values, and a naive reference for polyphony."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from studio.domains.base import Document
from studio.domains.music import MusicDomain
from studio.music import metrics
from studio.music.events import Note, Piece

BEAT = 12


def piece(*notes: tuple[int, int, int]) -> Piece:
    return Piece(tuple(sorted(Note(start, pitch, end) for start, pitch, end in notes)))


def test_pitch_class_entropy_and_scale_consistency() -> None:
    chromatic = piece(*[(i * BEAT, 60 + i, (i + 1) * BEAT) for i in range(12)])
    assert metrics.pitch_class_entropy(chromatic) == math.log2(12)
    assert metrics.scale_consistency(chromatic) == 7 / 12
    c_major = piece(*[(i * BEAT, p, (i + 1) * BEAT) for i, p in enumerate([60, 62, 64, 65, 67, 69, 71, 72])])
    assert metrics.scale_consistency(c_major) == 1.0
    single = piece((0, 60, BEAT), (BEAT, 72, 2 * BEAT))
    assert metrics.pitch_class_entropy(single) == 0.0


def test_polyphony_empty_beats_and_groove() -> None:
    chord = piece((0, 60, 4 * BEAT), (0, 64, 4 * BEAT), (0, 67, 2 * BEAT))
    assert metrics.polyphony(chord) == (3 * 2 + 2 * 2) / 4
    gap = piece((0, 60, BEAT), (3 * BEAT, 62, 4 * BEAT))  # beats 0..4; note ends count a beat
    assert metrics.empty_beat_rate(gap) == 1 - 4 / 5
    steady = piece(
        *[(bar * 4 * BEAT + beat * BEAT, 60, bar * 4 * BEAT + beat * BEAT + 6) for bar in range(4) for beat in range(4)]
    )
    assert metrics.groove_consistency(steady) == 1.0
    shifted = piece((0, 60, 6), (4 * BEAT + 3, 60, 4 * BEAT + 9))
    assert metrics.groove_consistency(shifted) == 1 - 2 / 48
    assert math.isnan(metrics.groove_consistency(piece((0, 60, 6))))
    assert all(math.isnan(v) for v in metrics.piece_metrics(Piece(())).values())


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 200), st.integers(0, 127), st.integers(1, 40)), min_size=1, max_size=30))
def test_polyphony_matches_a_naive_count(raw) -> None:
    notes = piece(*[(s, p, s + d) for s, p, d in raw])
    sounding = []
    for t in range(max(n.end for n in notes.notes)):
        pitches = {n.pitch for n in notes.notes if n.start <= t < n.end}
        if pitches:
            sounding.append(len(pitches))
    assert np.isclose(metrics.polyphony(notes), sum(sounding) / len(sounding))


def test_sample_report_compares_with_the_corpus() -> None:
    domain = MusicDomain()
    corpus = [Document(f"p{i}", piece((0, 60 + i, 24), (0, 64 + i, 24), (24, 67, 96))) for i in range(3)]
    generated = [domain.render([domain.separator_id, *domain.encode(doc.content)], None) for doc in corpus]
    report = domain.sample_report(generated, corpus)
    for name in metrics.METRICS:
        assert report[name] == report[f"corpus_{name}"] or math.isnan(report[f"corpus_{name}"])
        assert isinstance(report[f"{name}_within_one_std"], bool)
    assert report["polyphony"] == round(metrics.polyphony(corpus[0].content), 5)
    assert report["polyphony_within_one_std"]
