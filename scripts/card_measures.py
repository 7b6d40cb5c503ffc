"""Bring a music bundle's card up to date with what the music domain now measures on its
corpus, without retraining: the measures the card lacks are added, and every measure it
already has must come out the same (else the corpus is not the one it was trained on,
and nothing is written).  The weights and graphs are untouched.

    .venv/bin/python scripts/card_measures.py export/folk corpora/songs/oneills1850

Training measures all of them itself; this is for bundles shipped before a measure existed
(``lockstep``, added after ``folk`` was trained).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from studio.domains import read_documents
from studio.domains.music import MusicDomain
from studio.formats import CARD


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=Path)
    parser.add_argument("corpus", type=Path)
    parser.add_argument("--dry-run", action="store_true", help="print what would be added; write nothing")
    args = parser.parse_args()
    path = args.bundle / CARD
    card = json.loads(path.read_text(encoding="utf-8"))
    domain = card.get("domain", {})
    if domain.get("name") != MusicDomain.name:
        print(f"error: {args.bundle} is not a music bundle", file=sys.stderr)
        return 1
    codec = {key: domain[key] for key in ("ticks_per_beat", "velocity_bins", "max_shift_beats", "programs", "keys")}
    documents = read_documents(MusicDomain, args.corpus, card.get("train", {}).get("held_out", "tail"))
    measured = MusicDomain.from_documents(documents, **codec).to_config()
    differ = [key for key in domain if key in measured and measured[key] != domain[key]]
    if differ:
        names = ", ".join(differ)
        print(f"error: {args.corpus} measures {names} otherwise than the card: not its corpus", file=sys.stderr)
        return 1
    added = {key: value for key, value in measured.items() if key not in domain}
    print(json.dumps(added) if added else "nothing to add")
    if added and not args.dry_run:
        card["domain"] = {**domain, **added}
        partial = path.with_suffix(".partial")
        partial.write_text(json.dumps(card, indent=1, ensure_ascii=False))
        partial.replace(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
