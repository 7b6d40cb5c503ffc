"""Music as MIDI-like events (see :mod:`studio.music.events` for the representation).

The vocabulary is the event codebook, fixed by its options (grid, velocity bins, longest
shift, program tokens), so it travels in the card and never depends on the corpus.
Sampling hooks used by the generic generator: :meth:`MusicDomain.prime_ids` (continue a
MIDI or score file), :meth:`~MusicDomain.logits_mask` (``--key``),
:meth:`~MusicDomain.is_finished` (``--bars``) and :meth:`~MusicDomain.render` (MIDI, WAV,
piano roll at ``--tempo``).  Torch-free; music21 loads only for score files.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ..corpus import corpus_files, warn_skipped
from ..errors import StudioError
from ..music.bars import LONGEST_BAR_BEATS, BarGrid, BarsToGo, NoEndBeforeBars, bar_count
from ..music.events import PITCH_COUNT, EventCodec, Piece, time_signature_text, whole_bar_length
from ..music.files import MIDI_SUFFIXES, SCORE_SUFFIXES, UnreadableMusic, read_pieces
from ..music.grammar import InstantOrder, NoteGrammar, corpus_limits, events_per_instant
from ..music.metre import MetreGrid, MetreStats, metre_stats, named_metres
from ..music.metrics import METRICS, compare, scale_consistency
from ..music.render import SUFFIXES as RENDERED_SUFFIXES
from ..music.render import Rendered
from ..music.scales import key_name, major_or_minor, parse_key, pitch_class_mask
from ..music.shaping import PitchTemperature
from ..music.two_sample import compare_runs
from .base import CategoricalDomain, Document, Medium, TokenSink

DEFAULT_TEMPO = 120.0
AUGMENT_SEED = 0  # fixed: the augmented stream, hence training and resume, stay repeatable
CORPUS_MEASURES = 5  # 2: the metre grid, long notes, usual tempo and key; 4: usual metres and their names; 5: lockstep
CODEC_OPTIONS = ("ticks_per_beat", "velocity_bins", "max_shift_beats", "programs", "keys", "beats")


def read_music_file(path: Path) -> list[Piece]:
    """Pieces of one file; StudioError naming the file (by its own name) and saying
    what to do when it cannot be read."""
    path = Path(path)
    if not path.is_file():
        raise StudioError(f"music file not found: {path}")
    try:
        return read_pieces(path)
    except UnreadableMusic as error:
        raise StudioError(str(error)) from None
    except Exception:  # a score music21 parsed but could not turn into notes
        raise StudioError(
            f"cannot read the music in {path.name}; export it as a standard MIDI file (.mid) and try again"
        ) from None


KEY_IN_SCALE = 0.98  # a corpus this much in its scale keeps to its key: a key mask takes nothing from it


def piece_habits(piece: Piece) -> tuple[float | None, tuple[int, str] | None, float]:
    """(tempo, key, scale consistency) of one piece, for :func:`usual_tempo_and_key`."""
    consistency = scale_consistency(piece)
    return piece.tempo, piece.key, consistency if consistency == consistency else 1.0  # no notes: NaN


def usual_tempo_and_key(habits: Sequence[tuple[float | None, tuple[int, str] | None, float]]) -> tuple:
    """The median tempo (bpm, rounded) of the pieces that state one, and their most
    common key (``"D major"``) when the pieces keep to their scale (mean scale
    consistency at least ``KEY_IN_SCALE``: the O'Neill tunes, 0.989, not the chorales,
    0.932, whose accidentals a key mask would ban); None where there is none."""
    tempos = [tempo for tempo, _, _ in habits if tempo]
    keys = Counter(key for _, key, _ in habits if key)
    in_scale = float(np.mean([consistency for _, _, consistency in habits])) if habits else 0.0
    tempo = float(round(float(np.median(tempos)))) if tempos else None
    return tempo, key_name(*keys.most_common(1)[0][0]) if keys and in_scale >= KEY_IN_SCALE else None


class MusicDomain(CategoricalDomain):
    """Event-sequence domain for MIDI, MusicXML, ABC and Humdrum corpora."""

    name: ClassVar[str] = "music"
    suffixes: ClassVar[tuple[str, ...]] = MIDI_SUFFIXES + SCORE_SUFFIXES
    medium: ClassVar[Medium] = Medium.MUSIC
    default_suffix: ClassVar[str | None] = ".mid"  # `studio sample` writes a MIDI file unasked
    output_suffixes: ClassVar[tuple[str, ...]] = RENDERED_SUFFIXES
    compares_samples: ClassVar[bool] = True  # `studio eval` sets generated pieces beside the corpus
    pitched: ClassVar[bool] = True  # --pitch-temp shapes its note-ons
    unit_name: ClassVar[str] = "event"
    fresh_pieces: ClassVar[bool] = True  # a piece owes nothing to the one before it

    def __init__(
        self,
        codec: EventCodec | None = None,
        max_note_ticks: int | None = None,
        max_voices: int | None = None,
        grid_positions: Sequence[int] | None = None,
        long_note_ticks: int | None = None,
        corpus_tempo: float | None = None,
        corpus_key: str | None = None,
        usual_voices: int | None = None,
        usual_metres: Sequence[int] | None = None,
        usual_signatures: Sequence[Sequence[int]] | None = None,
        lockstep: bool = False,
    ):
        self.codec = codec or EventCodec()
        # the note grammar's limits (see studio.music.grammar): measured on the training
        # corpus; bundles from before they were recorded get 8 beats and no voice cap
        self.max_note_ticks = int(max_note_ticks or 8 * self.codec.ticks_per_beat)
        self.max_voices = int(max_voices or PITCH_COUNT)
        # the metre rule's grid and long-note cap (see studio.music.metre), measured on the
        # training corpus; bundles from before they were recorded sample without the rule
        self.grid_positions = tuple(int(p) for p in grid_positions) if grid_positions else None
        self.long_note_ticks = int(long_note_ticks) if long_note_ticks else None
        # the corpus's usual tempo and key: what the Compose tab offers first
        self.corpus_tempo = float(corpus_tempo) if corpus_tempo else None
        self.corpus_key = str(corpus_key) if corpus_key else None
        # the voice cap the note grammar applies: the corpus's usual most, not its rare most
        self.usual_voices = int(usual_voices) if usual_voices else None
        # the bar lengths (ticks) the corpus's pieces keep to: a sample's metre is one of them
        self.usual_metres = tuple(int(m) for m in usual_metres) if usual_metres else None
        # and how its scores write them (6/8 rather than 3/4): the names samples are given
        self.usual_signatures = tuple((int(n), int(d)) for n, d in usual_signatures) if usual_signatures else None
        # whether the corpus's notes end before the next one starts (melodies); --lockstep
        # holds samples to that (studio.music.grammar), which is not the default: see README
        self.lockstep = bool(lockstep)
        if any(m < 1 for m in self.usual_metres or ()) or any(
            n < 1 or d not in (1, 2, 4, 8, 16, 32) for n, d in self.usual_signatures or ()
        ):
            raise ValueError(f"usual metres {usual_metres} or signatures {usual_signatures} out of range")
        self._primers: dict[str, Piece] = {}

    # --- corpus -------------------------------------------------------------------
    @classmethod
    def source_files(cls, path: Path) -> list[Path]:
        """Music files under ``path``; none (not an error yet) when it holds other files."""
        path = Path(path)
        try:
            return corpus_files(path, cls.suffixes)
        except StudioError:
            if not path.exists():
                raise
            return []

    @classmethod
    def read_corpus(cls, path: Path) -> list[Document]:
        files = cls.source_files(path)
        documents, skipped = [], []
        for file in files:
            try:
                pieces = read_pieces(file)
            except Exception:  # damaged or unsupported file: listed once below
                skipped.append(file)
                continue
            for index, piece in enumerate(pieces):
                name = str(file) if len(pieces) == 1 else f"{file}#{index + 1}"
                documents.append(Document(name, piece))
        warn_skipped(skipped, "unreadable music files")
        if not documents:
            raise StudioError(
                f"no usable music in {path}: give MIDI (.mid), MusicXML, ABC or Humdrum files with notes in them"
            )
        return documents

    @classmethod
    def from_documents(cls, documents: Sequence[Document], **options: Any) -> MusicDomain:
        """The codebook does not depend on the corpus; ``options`` may set the codec's
        fields (others, meant for other domains, are ignored).  The corpus's longest note
        and most simultaneous notes become the note grammar's limits."""
        codec = EventCodec(**{k: v for k, v in options.items() if k in CODEC_OPTIONS})
        pieces = [document.content for document in documents]
        longest, voices = corpus_limits(pieces)
        stats = metre_stats(pieces, codec.ticks_per_beat)
        habits = [piece_habits(piece) for piece in pieces]
        return cls._measured(codec, longest, voices, stats, habits)

    @classmethod
    def _measured(cls, codec: EventCodec, longest: int, voices: int, stats: MetreStats, habits: list) -> MusicDomain:
        """The domain with what was measured on the corpus: the note grammar's limits, the
        metre grid and longest usual note, the usual tempo and key, the usual voices and metres."""
        return cls(
            codec,
            longest,
            voices,
            stats.positions(),
            stats.long_note(),
            *usual_tempo_and_key(habits),
            stats.usual_voices(),
            metres := stats.usual_metres(LONGEST_BAR_BEATS * codec.ticks_per_beat),
            stats.usual_signatures(metres),
            stats.lockstep(),
        )

    @classmethod
    def corpus_options(cls, options: dict) -> dict:
        """The codec's options, and the version of what is measured on the corpus on the
        way (a token cache from before the metre grid was measured is not reused)."""
        codec = EventCodec(**{k: v for k, v in options.items() if k in CODEC_OPTIONS})
        return {k: v for k, v in codec.to_config().items() if k in CODEC_OPTIONS} | {"measures": CORPUS_MEASURES}

    @classmethod
    def stream_corpus(cls, path: Path, files: Sequence[Path], options: dict, sink: TokenSink) -> MusicDomain:
        """One pass, a file at a time: the codebook is fixed by the options, so each
        piece is encoded as soon as it is parsed, and the note grammar's limits are
        taken over the pieces on the way."""
        codec = EventCodec(**{k: v for k, v in options.items() if k in CODEC_OPTIONS})
        sink.begin(codec.vocab_size, codec.separator_id)
        sink.start_pass("reading music")
        longest, voices, pieces_found, skipped = 1, 1, 0, []
        stats = MetreStats(codec.ticks_per_beat)
        habits = []
        for file in files:
            try:
                pieces = read_pieces(file)
            except Exception:  # damaged or unsupported file: listed once below
                skipped.append(file)
                pieces = []
            for piece in pieces:
                sink.write(np.asarray(codec.encode(piece), dtype=np.int64))
                sink.end_document()
                piece_longest, piece_voices = corpus_limits([piece])
                longest, voices = max(longest, piece_longest), max(voices, piece_voices)
                stats.add(piece)
                habits.append(piece_habits(piece))
                pieces_found += 1
            sink.advance(file.stat().st_size)
        warn_skipped(skipped, "unreadable music files")
        if not pieces_found:
            raise StudioError(
                f"no usable music in {path}: give MIDI (.mid), MusicXML, ABC or Humdrum files with notes in them"
            )
        return cls._measured(codec, longest, voices, stats, habits)

    def corpus_ids(self, documents: Sequence[Document], transpose: int = 0, **options: Any) -> np.ndarray:
        """Pieces in corpus order, each followed by the separator; with ``transpose`` the
        stream also goes through :meth:`augment`.  The trainer asks for plain ids, splits
        off the validation tail and augments only the training part."""
        ids = super().corpus_ids(documents)
        return self.augment(ids, transpose) if transpose else ids

    def augment(self, ids: np.ndarray, semitones: int) -> np.ndarray:
        """Transposition augmentation on an id stream: every piece (separator-delimited)
        at every shift in ``-semitones..+semitones`` that keeps its pitches in 0..127, in
        a fixed shuffled order so neighbouring windows differ in key."""
        ids = np.asarray(ids, dtype=np.int64)
        if semitones <= 0 or ids.size == 0:
            return ids
        ends = np.flatnonzero(ids == self.separator_id)
        if not ends.size or ends[-1] != ids.size - 1:  # a piece cut by the validation split
            ends = np.append(ends, ids.size - 1)
        starts = np.concatenate([[0], ends[:-1] + 1])
        codec = self.codec
        copies: list[np.ndarray] = []
        for start, end in zip(starts, ends):
            piece = ids[start : end + 1]
            if piece.size == 1 and piece[0] == self.separator_id:
                continue  # the separator that opens the stream: no piece before it
            if piece[-1] != self.separator_id:  # shuffled, it needs its own end
                piece = np.append(piece, self.separator_id)
            on = (piece >= codec.note_on_offset) & (piece < codec.note_on_offset + PITCH_COUNT)
            off = (piece >= codec.note_off_offset) & (piece < codec.note_off_offset + PITCH_COUNT)
            notes = on | off
            pitches = np.where(on, piece - codec.note_on_offset, piece - codec.note_off_offset)[notes]
            keys = (piece >= codec.key_offset) & (piece < codec.key_end)
            key_index = piece - codec.key_offset
            for shift in range(-semitones, semitones + 1):
                if pitches.size and (pitches.min() + shift < 0 or pitches.max() + shift >= PITCH_COUNT):
                    continue
                moved_keys = codec.key_offset + key_index // 12 * 12 + (key_index + shift) % 12
                copies.append(np.where(notes, piece + shift, np.where(keys, moved_keys, piece)))
        order = np.random.default_rng(AUGMENT_SEED).permutation(len(copies))
        opening = ids[:1] if ids[0] == self.separator_id else ids[:0]  # as the stream opened
        return np.concatenate([opening] + [copies[i] for i in order])

    # --- persistence ----------------------------------------------------------------
    def to_config(self) -> dict:
        return {
            "name": self.name,
            **self.codec.to_config(),
            "max_note_ticks": self.max_note_ticks,
            "max_voices": self.max_voices,
            **({"grid_positions": list(self.grid_positions)} if self.grid_positions else {}),
            **({"long_note_ticks": self.long_note_ticks} if self.long_note_ticks else {}),
            **({"corpus_tempo": self.corpus_tempo} if self.corpus_tempo else {}),
            **({"corpus_key": self.corpus_key} if self.corpus_key else {}),
            **({"usual_voices": self.usual_voices} if self.usual_voices else {}),
            **({"usual_metres": list(self.usual_metres)} if self.usual_metres else {}),
            **({"usual_signatures": [list(s) for s in self.usual_signatures]} if self.usual_signatures else {}),
            **({"lockstep": True} if self.lockstep else {}),
        }

    @classmethod
    def from_config(cls, config: dict) -> MusicDomain:
        try:
            return cls(
                EventCodec.from_config(config),
                max_note_ticks=config.get("max_note_ticks"),
                max_voices=config.get("max_voices"),
                grid_positions=config.get("grid_positions"),
                long_note_ticks=config.get("long_note_ticks"),
                corpus_tempo=config.get("corpus_tempo"),
                corpus_key=config.get("corpus_key"),
                usual_voices=config.get("usual_voices"),
                usual_metres=config.get("usual_metres"),
                usual_signatures=config.get("usual_signatures"),
                lockstep=config.get("lockstep", False),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise StudioError(f"damaged music domain config ({error}); re-export the model") from None

    # --- vocabulary -----------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return self.codec.vocab_size

    @property
    def separator_id(self) -> int:
        return self.codec.separator_id

    @property
    def bar_id(self) -> int:
        return self.codec.bar_id

    def encode(self, piece: Piece) -> list[int]:
        return self.codec.encode(piece)

    def decode(self, ids: Sequence[int]) -> Piece:
        return self.codec.decode(ids)

    def token_text(self, token_id: int) -> str:
        return self.codec.token_text(int(token_id))

    # --- sampling hooks ---------------------------------------------------------------
    def sample_defaults(self) -> dict:
        """The corpus's usual ``tempo`` and ``key`` (when the card records them)."""
        return {
            **({"tempo": self.corpus_tempo} if self.corpus_tempo else {}),
            **({"key": self.corpus_key} if self.corpus_key else {}),
        }

    def _primer(self, settings: Any) -> Piece | None:
        path = settings.prime_file
        if not path:
            return None
        if path not in self._primers:
            self._primers[path] = read_music_file(Path(path))[0]
        return self._primers[path]

    def _bars(self, settings: Any) -> tuple[int | None, tuple[int, ...] | None]:
        """(the bar length every generated bar keeps from the start, the lengths the first
        whole bar may take): the primer's last bar when there is a primer; with
        ``settings.metre``, its length as the only one (the piece may open with a pickup,
        as chorales and tunes do, then keeps that metre); else the corpus's usual ones.  A
        metre whose bars the corpus never keeps, or one that is not the primer's, is
        refused."""
        primer = self._primer(settings)
        lines = primer.bar_lines() if primer is not None else []
        primer_metre = lines[-1] - lines[-2] if len(lines) >= 2 else None
        text = getattr(settings, "metre", None)
        if not text:
            return primer_metre, self.usual_metres
        tpb, signature = self.codec.ticks_per_beat, time_signature_text(text)
        if signature is None:
            raise StudioError(f"--metre {text}: give a time signature such as 4/4, 3/4 or 6/8")
        ticks = whole_bar_length(*signature, tpb)
        if ticks is None:
            raise StudioError(f"--metre {text}: a bar of it is not a whole number of grid ticks; give one such as 7/8")
        if primer_metre is not None and ticks != primer_metre:
            raise StudioError(
                f"--metre {text} does not fit the primer, whose bars are {primer_metre / tpb:g} beats long: "
                "leave out --metre to go on in the primer's metre"
            )
        if self.usual_metres and ticks not in self.usual_metres:
            usual = ", ".join(f"{n}/{d}" for n, d in self.usual_signatures or ()) or ", ".join(
                f"{m / tpb:g} beats" for m in self.usual_metres
            )
            raise StudioError(
                f"--metre {text}: this model's corpus keeps to bars of {usual}; give one of those lengths "
                "(3/4 and 6/8 are one length), or leave out --metre"
            )
        return primer_metre, (ticks,)

    def prime_ids(self, settings: Any) -> list[int]:
        """``[SEP]`` (start of a piece), then the primer file's events when given: the
        sample begins with the primer's notes and continues from its last bar line.
        Without a primer, ``settings.key`` adds its KEY event (church modes as their
        parent major key), so the model starts in that key."""
        primer = self._primer(settings)
        self._bars(settings)  # checked before any work
        if primer is not None:
            return [self.separator_id] + self.encode(primer)
        if settings.prime:
            raise StudioError("music is primed with a file: use --prime-midi FILE (or --prime-file)")
        key = settings.key
        if key and self.codec.keys:  # start the piece in that key, as the corpus's pieces do
            stands_for = major_or_minor(*parse_key(key))
            if stands_for:
                return [self.separator_id, self.codec.key_id(*stands_for)]
        return [self.separator_id]

    def logits_mask(self, settings: Any) -> np.ndarray | None:
        """Bool [vocab_size]: with ``settings.key``, note-ons outside the scale are False.
        Note-offs stay allowed, so notes of an out-of-scale primer can still end."""
        key = settings.key
        if not key:
            return None
        in_scale = pitch_class_mask(key)
        mask = np.ones(self.vocab_size, dtype=bool)
        pitches = np.arange(PITCH_COUNT)
        mask[self.codec.note_on_offset + pitches] = in_scale[pitches % 12]
        return mask

    def constraints(self, settings: Any) -> list:
        """The note grammar (:mod:`studio.music.grammar`): no note left hanging longer
        than the corpus's longest note, no more voices than the corpus's most, and (with
        ``settings.lockstep``) no note started over a held one; bars of
        one length, the primer's metre when there is one, else ``settings.metre``'s
        after an optional pickup (:class:`BarGrid`); with
        ``settings.bars``, no end of the piece before that many new bars
        (:class:`NoEndBeforeBars`).  Bars count from the end of the prime.  When the card
        records the corpus's grid (:mod:`studio.music.metre`), time stops only on it and no
        note outlasts the corpus's long notes (:class:`MetreGrid`).  For beam search, first
        of all, each instant keeps the codec's order (:class:`InstantOrder`), so no beam
        can run on without moving time, and hence bars, forward (plain sampling, which
        does not seek cheap events, draws as before)."""
        start = len(self.prime_ids(settings))
        metre, metres = self._bars(settings)
        rules: list = [
            NoteGrammar(
                self.codec,
                self.max_note_ticks,
                min(self.max_voices, self.usual_voices or PITCH_COUNT),
                lockstep=settings.lockstep,
            ),
            BarGrid(self.codec, start=start, metre=metre, metres=metres),
        ]
        if self.grid_positions:
            rules.append(MetreGrid(self.codec, self.grid_positions, self.long_note_ticks))
        if settings.num_beams > 1:  # beams seek cheap events: keep each instant in order
            rules.insert(0, InstantOrder(self.codec))
        bars = settings.bars
        if bars:
            rules.append(NoEndBeforeBars(self.codec, int(bars), start=start))
        samples = not settings.is_greedy and (settings.num_beams == 1 or settings.stochastic_beams)
        if settings.pitch_temperature != 1.0 and samples:  # shapes a draw, as --temp does
            rules.append(PitchTemperature.of(self.codec, settings.pitch_temperature))
        return rules

    def is_finished(self, generated_ids: Sequence[int], settings: Any) -> bool:
        """True on a separator (the model ended the piece) or once ``settings.bars`` bars
        are complete (see :func:`studio.music.bars.bar_count`), so the piece ends on the
        bar line that completes the last bar asked for."""
        if not len(generated_ids):
            return False
        last = int(generated_ids[-1])
        if last == self.separator_id:
            return True
        bars = settings.bars
        # only a bar marker can complete a bar: counting only then keeps long runs linear
        return bool(bars) and last == self.bar_id and self.completed_bars(generated_ids) >= bars

    def finish_tracker(self, settings: Any) -> BarsToGo | None:
        """:meth:`is_finished` one event at a time (beam search keeps one state per
        hypothesis instead of re-counting bars over the whole history)."""
        if not settings.bars:
            return None
        metre, _ = self._bars(settings)
        return BarsToGo(self.codec, int(settings.bars), events_per_instant(self.max_voices), metre)

    def completed_bars(self, ids: Sequence[int]) -> int:
        """Bars completed by ``ids`` (events after the prime, without separators)."""
        return bar_count(ids, self.codec)

    def render(self, ids: Sequence[int], settings: Any = None) -> Rendered:
        """The piece the ids spell (from the first event after the leading separators up
        to the next separator), at ``settings.tempo``, else the primer's, else 120 bpm.
        A piece with fewer new bars than ``settings.bars`` says so in its text."""
        ids = [int(i) for i in ids]
        while ids and ids[0] == self.separator_id:
            ids.pop(0)
        if self.separator_id in ids:
            ids = ids[: ids.index(self.separator_id)]
        primer = self._primer(settings) if settings is not None else None
        primer_ids: list[int] = []
        if primer is not None:
            # callers may hand over the continuation alone; the piece starts with the primer
            primer_ids = self.encode(primer)
            if ids[: len(primer_ids)] != primer_ids:
                ids = primer_ids + ids
        tempo = (
            (settings.tempo if settings is not None else None) or (primer.tempo if primer else None) or DEFAULT_TEMPO
        )
        asked = settings.bars if settings is not None else None
        written = self.completed_bars(ids[len(primer_ids) :]) if asked else 0
        # only the length cap stops a piece short of its bars (the end is banned until then)
        cap = settings.length if settings is not None else 0
        note = (
            f"stopped by the {cap:,}-event length cap after {written} of {asked} bars"
            if asked and written < asked
            else ""
        )
        piece = self.decode(ids)
        # the time signatures as the user, the primer, else the corpus, writes bars of their length
        metre_text = getattr(settings, "metre", None)
        asked_metre = time_signature_text(metre_text) if metre_text else None
        names = [asked_metre] if asked_metre else []
        names += [sig[1:] for sig in primer.time_signatures] if primer is not None else []
        names += list(self.usual_signatures or ())
        return Rendered(named_metres(piece, names) if names else piece, float(tempo), note)

    # --- evaluation ---------------------------------------------------------------------
    def sample_report(self, outputs: Sequence[Any], documents: Sequence[Document]) -> dict:
        """MusPy-style metrics (:mod:`studio.music.metrics`) of generated pieces beside the
        corpus's, flat: ``<metric>`` / ``<metric>_std`` for the generated pieces,
        ``corpus_<metric>`` / ``corpus_<metric>_std`` for the corpus and
        ``<metric>_within_one_std`` for the verdict."""
        comparison = compare([output.piece for output in outputs], [d.content for d in documents])
        report: dict[str, Any] = {}
        for name in METRICS:
            row = comparison[name]
            report[name] = round(row["generated"]["mean"], 5)
            report[f"{name}_std"] = round(row["generated"]["std"], 5)
            report[f"corpus_{name}"] = round(row["corpus"]["mean"], 5)
            report[f"corpus_{name}_std"] = round(row["corpus"]["std"], 5)
            report[f"{name}_within_one_std"] = row["within_one_std"]
        return report

    def matched_lengths(self, documents: Sequence[Document], length: int) -> list[int]:
        """The bars of each piece that start within its first ``length`` beats (at least
        one): a chorale of 9 bars of 4/4 asks for 9, one of 20 bars for 12 when 48 beats
        are compared."""
        cut = length * self.codec.ticks_per_beat
        bars = []
        for document in documents:
            piece = document.content
            lines = piece.bar_lines()[:-1]  # where each bar starts
            bars.append(max(1, sum(1 for line in lines if line < min(cut, piece.end))))
        return bars

    def matched_metres(self, documents: Sequence[Document]) -> list[str | None]:
        """Each piece's opening time signature, when its bars are ones the corpus keeps to
        (else None: the model chooses), so a matched sample's bars are as long as its."""
        metres = []
        for document in documents:
            _, numerator, denominator = sorted(document.content.time_signatures)[0]
            name = f"{numerator}/{denominator}"
            ticks = whole_bar_length(numerator, denominator, self.codec.ticks_per_beat)
            usual = not self.usual_metres or ticks in self.usual_metres
            metres.append(name if time_signature_text(name) and ticks is not None and usual else None)
        return metres

    def two_sample_report(
        self,
        outputs: Sequence[Any],
        documents: Sequence[Document],
        *,
        length: int,
        seed: int = 0,
        more_runs: Sequence[tuple[Sequence[Any], Sequence[Document]]] = (),
        reference: Sequence[Document] = (),
    ) -> dict:
        """:mod:`studio.music.two_sample` on the generated pieces and the corpus's, both
        cut to their first ``length`` beats; the larger set is subsampled to the smaller's
        size (seeded).  ``more_runs``: further ``(outputs, documents)`` sets generated with
        other seeds; the accuracy is then the mean over all the runs, with its standard
        error.  ``reference``: corpus pieces the model trained on; the same test between
        them and ``documents``, once per run, gives ``two_sample_reference_accuracy``: what
        a model that wrote exactly like its training pieces would measure (0.5 when the
        held-out pieces are like the training ones; more when they differ in kind)."""
        runs = [(outputs, documents), *more_runs]
        try:
            result = compare_runs(
                [([o.piece for o in outs], [d.content for d in docs]) for outs, docs in runs], beats=length, seed=seed
            )
            if reference:
                real = [d.content for d in reference]
                held_out = [d.content for d in documents]
                baseline = compare_runs([(real, held_out)] * len(runs), beats=length, seed=seed)
        except ValueError as error:  # too few pieces on one side
            raise StudioError(f"{error}: give more --samples or a larger corpus") from None
        report = {**result.to_json(), "two_sample_beats": length}
        if reference:
            report["two_sample_reference_accuracy"] = round(baseline.accuracy, 4)
        return report
