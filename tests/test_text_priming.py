"""An empty prime starts a text model where documents start: after a blank line and the
separator, as in training, not at a lone separator from the zero state (which made the
markdown model write "¢好V好~ñ┼à" at -4.8 nats/token)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from studio.api import sample
from studio.domains.base import Document
from studio.domains.chars import CharsDomain
from studio.domains.words import WordsDomain
from studio.sampling.settings import SampleSettings

ROOT = Path(__file__).resolve().parent.parent
MARKDOWN = ROOT / "export" / "markdown"
NO_PRIME = SampleSettings()


def test_every_text_domain_starts_after_a_blank_line_and_the_separator() -> None:
    chars = CharsDomain.from_documents([Document("a", "# A\n\ntext\n")])
    start = chars.prime_ids(NO_PRIME)
    assert chars.decode(start) == "\n\n\x1e" and chars.hidden_prefix(start, NO_PRIME) == 3
    words = WordsDomain.from_documents([Document("a", "# A\n\ntext\n")])  # "\n\n" is a token
    start = words.prime_ids(NO_PRIME)
    assert len(start) == 2 and words.decode(start) == "\n\n\x1e"
    assert words.hidden_prefix(start, NO_PRIME) == 2
    flat = CharsDomain.from_documents([Document("a", "no newline here")])
    assert flat.prime_ids(NO_PRIME) == [flat.separator_id]  # nothing else to lead with
    assert chars.prime_ids(SampleSettings(prime="A")) == chars.encode("\nA")  # primes as before


@pytest.mark.skipif(not (MARKDOWN / "card.json").is_file(), reason="needs export/markdown")
def test_unprimed_markdown_reads_like_its_corpus() -> None:
    """Every corpora/markdown document opens with "# Title".  Before: no sample opened
    with "#", a third ended at once, and the first 50 tokens cost 2.8 nats each."""
    costs, headings = [], 0
    for seed in range(10):
        [text] = sample(str(MARKDOWN), seed=seed, length=50, temperature=0.8)
        assert len(text.tokens) == 50  # did not end at once
        costs.append(-text.logprob / len(text.tokens))
        headings += text.text.startswith("#")
    assert headings >= 7 and float(np.mean(costs)) < 2.0
