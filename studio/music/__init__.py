"""Music: an event representation of MIDI (note-on/off, velocity bins, time shifts on a
beat grid with triplets, bar markers), its file readers and writers, rendering to MIDI,
WAV and piano-roll PNG, evaluation metrics, and the builder of ``corpora/songs``.

Everything here imports without torch; music21 is imported lazily (it is slow to load).
"""
