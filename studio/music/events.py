"""Pieces of music as notes on a beat grid, and the event codec between pieces and ids.

A :class:`Piece` holds notes in *grid ticks*: ``ticks_per_beat`` ticks per quarter note
(12 by default, so sixteenths are 3 ticks and eighth-note triplets 4).  The
:class:`EventCodec` turns a piece into the events a musician would write into a DAW:

* ``KEY k``      once, at the start, when the source states its key (24 major and minor
  keys; church modes count as their parent major key), when enabled;
* ``PROGRAM p``  once, after it (the General MIDI instrument), when enabled;
* ``BAR``        at every bar line, from the first bar to the one that closes the piece;
* ``BEAT``       when enabled, at every quarter-note line inside a bar (one, two, three
  quarters after its bar line), so each event's place in the bar is spelled out rather
  than summed from the shifts since the bar line (REMI's bar and position tokens, in
  the fewest events); shifts never cross it either;
* ``NOTE_OFF p`` / ``NOTE_ON p`` per pitch, so polyphony is kept;
* ``VELOCITY b`` before a note-on whose velocity bin differs from the previous one;
* ``SHIFT k``    advances time by ``k`` ticks (``1 <= k <= max_shift``); shifts never cross
  a bar line, so every ``BAR`` sits exactly on its bar line.

At one instant the order is: note-offs, bar or beat marker, then note-ons (each group by pitch),
which makes the encoding of a piece unique.  Round trip: ``decode(encode(piece))`` keeps
every note's pitch, velocity bin, onset and duration on the grid, once two notes of the
same pitch no longer overlap (:func:`normalize_notes`; MIDI itself cannot sound one
pitch twice on one channel).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from fractions import Fraction

from studio.music.scales import key_name

TICKS_PER_BEAT = 12  # 1/12 beat: sixteenths (3) and eighth-note triplets (4) both land on it
VELOCITY_BINS = 8
MAX_SHIFT_BEATS = 4
PITCH_COUNT = 128
DEFAULT_VELOCITY = 80  # music21 scores and generated notes without a VELOCITY event
DEFAULT_TIME_SIGNATURE = (4, 4)
DEFAULT_PROGRAM = 0

SEPARATOR = "SEP"
MODES = ("major", "minor")


@dataclass(frozen=True, order=True)
class Note:
    """One note: MIDI ``pitch`` and ``velocity`` (1..127), ``start`` < ``end`` in grid ticks."""

    start: int
    pitch: int
    end: int
    velocity: int = DEFAULT_VELOCITY


@dataclass(frozen=True)
class Piece:
    """Notes on the grid plus what a MIDI file needs around them.

    ``time_signatures`` holds ``(tick, numerator, denominator)`` changes, the first at
    tick 0; ``length`` is where the piece ends (at least the last note's end).
    """

    notes: tuple[Note, ...]
    time_signatures: tuple[tuple[int, int, int], ...] = ((0, *DEFAULT_TIME_SIGNATURE),)
    program: int = DEFAULT_PROGRAM
    tempo: float | None = None  # beats per minute, when the source states one
    key: tuple[int, str] | None = None  # (tonic pitch class, "major" | "minor")
    length: int = 0
    ticks_per_beat: int = TICKS_PER_BEAT

    @property
    def end(self) -> int:
        return max([self.length] + [note.end for note in self.notes])

    def transposed(self, semitones: int) -> Piece | None:
        """The piece moved by ``semitones``, or None when a pitch would leave 0..127."""
        pitches = [note.pitch + semitones for note in self.notes]
        if pitches and (min(pitches) < 0 or max(pitches) >= PITCH_COUNT):
            return None
        notes = tuple(replace(note, pitch=pitch) for note, pitch in zip(self.notes, pitches))
        key = ((self.key[0] + semitones) % 12, self.key[1]) if self.key else None
        return replace(self, notes=notes, key=key)

    def bar_lines(self) -> list[int]:
        """Bar-line ticks from 0 up to and including the line that closes the piece."""
        end = self.end
        signatures = sorted(self.time_signatures) or [(0, *DEFAULT_TIME_SIGNATURE)]
        if signatures[0][0] > 0:
            signatures.insert(0, (0, *DEFAULT_TIME_SIGNATURE))
        signatures = [signatures[0]] + [s for s in signatures[1:] if s[0] < end]
        lines: list[int] = []
        for index, (tick, numerator, denominator) in enumerate(signatures):
            bar = bar_length(numerator, denominator, self.ticks_per_beat)
            last_segment = index + 1 == len(signatures)
            limit = end if last_segment else signatures[index + 1][0]
            position = tick
            # the last segment runs on to the bar line at or after the end
            while position < limit or (last_segment and (not lines or lines[-1] < end)):
                lines.append(position)
                position += bar
        return lines


def pickup_padding(bar_lines: Sequence[int]) -> int:
    """Ticks of rest that turn a pickup (anacrusis) into a full bar: when the first bar
    is shorter than the second, it is the end of a bar of the second's length, as a
    score writes it.  0 when there is no pickup."""
    if len(bar_lines) < 3:
        return 0
    first, second = bar_lines[1] - bar_lines[0], bar_lines[2] - bar_lines[1]
    return second - first if 0 < first < second else 0


def without_pickup(piece: Piece) -> Piece:
    """``piece`` with a pickup bar padded at the front (see :func:`pickup_padding`), so
    its first metre is the piece's metre rather than the pickup's length (a MIDI file
    may state a pickup as a short bar of its own metre, e.g. 1/4 before 4/4)."""
    padding = pickup_padding(piece.bar_lines())
    if not padding:
        return piece
    notes = tuple(replace(note, start=note.start + padding, end=note.end + padding) for note in piece.notes)
    later = [(tick + padding, *metre) for tick, *metre in sorted(piece.time_signatures)[1:]]
    signatures = ((0, *later[0][1:]),) + tuple(later[1:]) if later else piece.time_signatures
    return replace(piece, notes=notes, time_signatures=signatures, length=piece.length + padding)


def bar_length(numerator: int, denominator: int, ticks_per_beat: int = TICKS_PER_BEAT) -> int:
    """Ticks in one bar of ``numerator/denominator`` (a beat is a quarter note)."""
    return max(1, round(numerator * ticks_per_beat * 4 / denominator))


def whole_bar_length(numerator: int, denominator: int, ticks_per_beat: int = TICKS_PER_BEAT) -> int | None:
    """Ticks in one bar of ``numerator/denominator``, or None when the bar is not a whole
    number of grid ticks (7/32 on a grid of twelfths of a beat)."""
    return None if numerator * ticks_per_beat * 4 % denominator else numerator * ticks_per_beat * 4 // denominator


def time_signature_text(text: str) -> tuple[int, int] | None:
    """``(numerator, denominator)`` of a time signature written ``"6/8"``, or None when
    it is not one (beats 1-32 over a power of two up to 32)."""
    numerator, slash, denominator = str(text).strip().partition("/")
    if not (slash and numerator.isdigit() and denominator.isdigit()):
        return None
    top, bottom = int(numerator), int(denominator)
    return (top, bottom) if 1 <= top <= 32 and bottom in (1, 2, 4, 8, 16, 32) else None


def time_signature_of(length: int, ticks_per_beat: int = TICKS_PER_BEAT) -> tuple[int, int] | None:
    """The simplest ``(numerator, denominator)`` whose bar is ``length`` ticks, or None."""
    for denominator in (4, 8, 16, 2):
        numerator = Fraction(length * denominator, 4 * ticks_per_beat)
        if numerator.denominator == 1 and numerator > 0:
            return int(numerator), denominator
    return None


def normalize_notes(notes: Iterable[Note]) -> tuple[Note, ...]:
    """Notes sorted by (start, pitch) with no two sounding the same pitch at once.

    Zero-length notes last one tick; a same-pitch note that starts while another still
    sounds cuts the earlier one short; of two starting together the longer survives.
    """
    by_pitch = sorted(
        (replace(note, end=max(note.end, note.start + 1)) for note in notes),
        key=lambda note: (note.pitch, note.start, -note.end),
    )
    kept: list[Note] = []
    for note in by_pitch:
        if kept and kept[-1].pitch == note.pitch:
            if kept[-1].start == note.start:
                continue
            if kept[-1].end > note.start:
                kept[-1] = replace(kept[-1], end=note.start)
        kept.append(note)
    return tuple(sorted(kept))


def velocity_bin(velocity: int, bins: int = VELOCITY_BINS) -> int:
    """Bin ``0..bins-1`` of a MIDI velocity (clipped to 1..127)."""
    velocity = min(127, max(1, int(velocity)))
    return min(bins - 1, (velocity - 1) * bins // 127)


def bin_velocity(index: int, bins: int = VELOCITY_BINS) -> int:
    """The velocity at the middle of bin ``index`` (its bin is ``index`` again)."""
    members = [v for v in range(1, 128) if velocity_bin(v, bins) == index]
    return members[len(members) // 2]


@dataclass(frozen=True)
class EventCodec:
    """The event vocabulary and the two directions between pieces and ids."""

    ticks_per_beat: int = TICKS_PER_BEAT
    velocity_bins: int = VELOCITY_BINS
    max_shift_beats: int = MAX_SHIFT_BEATS
    programs: bool = True
    keys: bool = True
    beats: bool = False
    tokens: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        tokens = [SEPARATOR, "BAR"]
        tokens += [f"NOTE_ON {p}" for p in range(PITCH_COUNT)]
        tokens += [f"NOTE_OFF {p}" for p in range(PITCH_COUNT)]
        tokens += [f"VELOCITY {b}" for b in range(self.velocity_bins)]
        tokens += [f"SHIFT {k}" for k in range(1, self.max_shift + 1)]
        if self.programs:
            tokens += [f"PROGRAM {p}" for p in range(128)]
        if self.keys:
            tokens += [f"KEY {key_name(tonic, mode)}" for mode in MODES for tonic in range(12)]
        if self.beats:
            tokens.append("BEAT")
        object.__setattr__(self, "tokens", tuple(tokens))

    # --- layout of the id space ------------------------------------------------
    @property
    def max_shift(self) -> int:
        return self.max_shift_beats * self.ticks_per_beat

    @property
    def vocab_size(self) -> int:
        return len(self.tokens)

    separator_id = 0
    bar_id = 1
    note_on_offset = 2
    note_off_offset = 2 + PITCH_COUNT
    velocity_offset = 2 + 2 * PITCH_COUNT

    @property
    def shift_offset(self) -> int:  # id of SHIFT 1
        return self.velocity_offset + self.velocity_bins

    @property
    def program_offset(self) -> int:
        return self.shift_offset + self.max_shift

    @property
    def key_offset(self) -> int:  # id of KEY C major, then 11 more majors, then minors
        return self.program_offset + (128 if self.programs else 0)

    @property
    def key_end(self) -> int:  # one past the last KEY id
        return self.key_offset + (2 * 12 if self.keys else 0)

    @property
    def beat_id(self) -> int | None:  # the BEAT marker, the last id, when the codec has one
        return self.key_end if self.beats else None

    def beat_lines(self, bar_lines: Sequence[int]) -> list[int]:
        """The quarter-note lines strictly inside each bar of ``bar_lines`` (ticks)."""
        tpb = self.ticks_per_beat
        return [tick for line, next_line in zip(bar_lines, bar_lines[1:]) for tick in range(line + tpb, next_line, tpb)]

    def key_id(self, tonic: int, mode: str) -> int:
        return self.key_offset + MODES.index(mode) * 12 + tonic % 12

    def token_text(self, token_id: int) -> str:
        """``NOTE_ON 60``, ``SHIFT 1/4`` (in beats), ``BAR``, ``SEP`` ..."""
        text = self.tokens[token_id]
        if text.startswith("SHIFT "):
            beats = Fraction(int(text.split()[1]), self.ticks_per_beat)
            return f"SHIFT {beats}"
        return text

    # --- encoding ---------------------------------------------------------------
    def encode(self, piece: Piece) -> list[int]:
        """Piece -> ids (no separators); see the module docstring for the layout."""
        if piece.ticks_per_beat != self.ticks_per_beat:
            raise ValueError("piece and codec disagree on ticks per beat")
        notes = normalize_notes(piece.notes)
        lines = piece.bar_lines()
        bars = set(lines)
        beats = set(self.beat_lines(lines)) if self.beats else set()
        offs: dict[int, list[int]] = {}
        ons: dict[int, list[Note]] = {}
        for note in notes:
            offs.setdefault(note.end, []).append(note.pitch)
            ons.setdefault(note.start, []).append(note)
        ids: list[int] = []
        if self.keys and piece.key:
            ids.append(self.key_id(*piece.key))
        if self.programs:
            ids.append(self.program_offset + min(127, max(0, piece.program)))
        current_bin = None
        time = 0
        for tick in sorted(bars | beats | offs.keys() | ons.keys()):
            self._shift(ids, tick - time)
            time = tick
            ids.extend(self.note_off_offset + p for p in sorted(offs.get(tick, ())))
            if tick in bars:
                ids.append(self.bar_id)
            elif tick in beats:
                ids.append(self.key_end)  # = beat_id: a codec with beats has its marker last
            for note in sorted(ons.get(tick, ()), key=lambda n: n.pitch):
                level = velocity_bin(note.velocity, self.velocity_bins)
                if level != current_bin:
                    ids.append(self.velocity_offset + level)
                    current_bin = level
                ids.append(self.note_on_offset + note.pitch)
        return ids

    def _shift(self, ids: list[int], ticks: int) -> None:
        while ticks > 0:
            step = min(ticks, self.max_shift)
            ids.append(self.shift_offset + step - 1)
            ticks -= step

    # --- decoding ---------------------------------------------------------------
    def decode(self, ids: Sequence[int]) -> Piece:
        """Ids -> piece.  Forgiving, since a model wrote them: stray note-offs are
        ignored, a note-on of a sounding pitch restarts it, zero-length notes vanish,
        notes still sounding end with the piece; separators and beat markers are skipped.  Bar markers
        give the time signatures (from their spacing) and the length; a first bar
        shorter than the second is a pickup, padded with rest at the front (as the
        corpus's scores are) so that it does not become the piece's metre."""
        time = 0
        level = velocity_bin(DEFAULT_VELOCITY, self.velocity_bins)
        sounding: dict[int, tuple[int, int]] = {}
        notes: list[Note] = []
        bars: list[int] = []
        program = None
        key = None

        def close(pitch: int) -> None:
            start, velocity = sounding.pop(pitch)
            if time > start:
                notes.append(Note(start, pitch, time, velocity))

        for token_id in ids:
            token_id = int(token_id)
            if token_id == self.bar_id:
                if not bars or bars[-1] != time:
                    bars.append(time)
            elif self.note_on_offset <= token_id < self.note_off_offset:
                pitch = token_id - self.note_on_offset
                if pitch in sounding:
                    close(pitch)
                sounding[pitch] = (time, bin_velocity(level, self.velocity_bins))
            elif self.note_off_offset <= token_id < self.velocity_offset:
                pitch = token_id - self.note_off_offset
                if pitch in sounding:
                    close(pitch)
            elif self.velocity_offset <= token_id < self.shift_offset:
                level = token_id - self.velocity_offset
            elif self.shift_offset <= token_id < self.program_offset:
                time += token_id - self.shift_offset + 1
            elif self.programs and self.program_offset <= token_id < self.key_offset:
                program = token_id - self.program_offset if program is None else program
            elif self.keys and self.key_offset <= token_id < self.key_end and key is None:
                mode, tonic = divmod(token_id - self.key_offset, 12)
                key = (tonic, MODES[mode])
        time = max([time] + bars[-1:])
        for pitch in sorted(sounding):
            close(pitch)
        if bars and bars[0] > 0:  # music before the first marker: the piece's start is a bar line
            bars.insert(0, 0)
        padding = pickup_padding(bars)
        if padding:  # a short first bar is a pickup: the metre is the next bar's
            notes = [replace(note, start=note.start + padding, end=note.end + padding) for note in notes]
            bars = [0] + [line + padding for line in bars[1:]]
            time += padding
        return Piece(
            notes=tuple(sorted(notes)),
            time_signatures=self._signatures(bars),
            program=DEFAULT_PROGRAM if program is None else program,
            key=key,
            length=time,
            ticks_per_beat=self.ticks_per_beat,
        )

    def _signatures(self, bars: list[int]) -> tuple[tuple[int, int, int], ...]:
        signatures: list[tuple[int, int, int]] = []
        for start, stop in zip(bars, bars[1:]):
            signature = time_signature_of(stop - start, self.ticks_per_beat)
            if signature and (not signatures or signatures[-1][1:] != signature):
                signatures.append((start, *signature))
        if not signatures or signatures[0][0] != 0:
            first = signatures[0][1:] if signatures else DEFAULT_TIME_SIGNATURE
            signatures.insert(0, (0, *first))
        return tuple(signatures)

    # --- persistence --------------------------------------------------------------
    def to_config(self) -> dict:
        return {
            "ticks_per_beat": self.ticks_per_beat,
            "velocity_bins": self.velocity_bins,
            "max_shift_beats": self.max_shift_beats,
            "programs": self.programs,
            "keys": self.keys,
            **({"beats": True} if self.beats else {}),
            "tokens": list(self.tokens),
        }

    @classmethod
    def from_config(cls, config: dict) -> EventCodec:
        codec = cls(
            ticks_per_beat=int(config["ticks_per_beat"]),
            velocity_bins=int(config["velocity_bins"]),
            max_shift_beats=int(config["max_shift_beats"]),
            programs=bool(config["programs"]),
            keys=bool(config.get("keys", False)),
            beats=bool(config.get("beats", False)),
        )
        if "tokens" in config and list(config["tokens"]) != list(codec.tokens):
            raise ValueError("the event codebook in this config does not match its options")
        return codec
