"""The sampler's random numbers: a counter-based SplitMix64 stream that numpy and
JavaScript (``web/static/studio-sampler.js``, with ``BigInt``) reproduce bit for bit.

Every sample in the studio draws from a :class:`CounterRNG` keyed by ``(seed, stream)``
(``stream`` is the row of a ``--num`` batch; 0 elsewhere).  Word ``i`` of the stream is
a pure function of the key and ``i``::

    mix(z)   = z ^= z >> 30; z *= 0xBF58476D1CE4E5B9; z ^= z >> 27; z *= 0x94D049BB133111EB;
               z ^ (z >> 31)                                   (all arithmetic mod 2**64)
    key      = mix(mix(seed) ^ stream)
    word(i)  = mix(key + (i + 1) * 0x9E3779B97F4A7C15)         (SplitMix64 begun at ``key``)
    uniform  = (word >> 11) * 2**-53                            (a double in [0, 1))

The integer steps and the scaling by a power of two are exact in both languages, so the
uniforms are identical; ``tests/test_browser_sampling.py`` checks this against node.
Normals (Box-Muller, one pair per two uniforms) and Gumbels are built from the same
uniforms; they go through ``log``/``cos``/``sin``, which two maths libraries may round
differently in the last bit.

The object offers the few ``numpy.random.Generator`` methods the sampling path calls
(:meth:`random`, :meth:`standard_normal`, :meth:`gumbel`), so a call site changes only
where the generator is built.
"""

from __future__ import annotations

import math

import numpy as np

MASK = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15
MULTIPLIER_1 = 0xBF58476D1CE4E5B9
MULTIPLIER_2 = 0x94D049BB133111EB
UNIT = 2.0**-53  # one step of a 53-bit uniform

_U64 = np.uint64


def mix64(value: int) -> int:
    """SplitMix64's finaliser on a Python int (taken mod 2**64)."""
    z = value & MASK
    z = ((z ^ (z >> 30)) * MULTIPLIER_1) & MASK
    z = ((z ^ (z >> 27)) * MULTIPLIER_2) & MASK
    return z ^ (z >> 31)


def _mix64_array(z: np.ndarray) -> np.ndarray:
    """:func:`mix64` on a uint64 array (numpy's uint64 arithmetic wraps mod 2**64)."""
    z = (z ^ (z >> _U64(30))) * _U64(MULTIPLIER_1)
    z = (z ^ (z >> _U64(27))) * _U64(MULTIPLIER_2)
    return z ^ (z >> _U64(31))


def stream_key(seed: int, stream: int = 0) -> int:
    """The 64-bit key of stream ``stream`` of ``seed`` (both integers >= 0)."""
    if seed < 0 or stream < 0:
        raise ValueError(f"seed and stream must be 0 or more (got {seed}, {stream})")
    return mix64(mix64(seed) ^ (stream & MASK))


class CounterRNG:
    """Uniforms, normals and Gumbels from word ``counter, counter + 1, ...`` of the
    SplitMix64 stream keyed by ``(seed, stream)``; ``counter`` starts at 0 and advances by
    one per uniform consumed."""

    def __init__(self, seed: int, stream: int = 0):
        self.seed, self.stream = int(seed), int(stream)
        self.key = stream_key(self.seed, self.stream)
        self.counter = 0

    def words(self, count: int) -> np.ndarray:
        """The next ``count`` raw 64-bit words, uint64 ``(count,)``."""
        index = np.arange(self.counter + 1, self.counter + 1 + count, dtype=np.uint64)
        self.counter += count
        with np.errstate(over="ignore"):
            return _mix64_array(_U64(self.key) + index * _U64(GOLDEN))

    def _uniforms(self, count: int) -> np.ndarray:
        return (self.words(count) >> _U64(11)).astype(np.float64) * UNIT

    def random(self, size=None):
        """Uniform doubles in [0, 1): a float for ``size=None``, else an array of ``size``."""
        if size is None:  # the per-token draw: plain integers beat numpy for one value
            self.counter += 1
            word = mix64(self.key + self.counter * GOLDEN)
            return (word >> 11) * UNIT
        shape = (size,) if isinstance(size, int) else tuple(size)
        return self._uniforms(math.prod(shape)).reshape(shape)

    def standard_normal(self, size=None):
        """Standard normals by Box-Muller: uniforms (u1, u2) give
        ``sqrt(-2 log(1 - u1)) * (cos(2 pi u2), sin(2 pi u2))``, in that order; an odd
        count drops the last sine."""
        shape = () if size is None else ((size,) if isinstance(size, int) else tuple(size))
        count = math.prod(shape)
        pairs = (count + 1) // 2
        uniforms = self._uniforms(2 * pairs).reshape(pairs, 2)
        radius = np.sqrt(-2.0 * np.log1p(-uniforms[:, 0]))
        angle = 2.0 * math.pi * uniforms[:, 1]
        normals = np.stack([radius * np.cos(angle), radius * np.sin(angle)], 1).reshape(-1)[:count]
        return float(normals[0]) if size is None else normals.reshape(shape)

    def gumbel(self, size=None):
        """Standard Gumbels ``-log(-log(u))`` with ``u = (word >> 11 + 0.5) * 2**-53``
        strictly inside (0, 1), so never infinite."""
        shape = () if size is None else ((size,) if isinstance(size, int) else tuple(size))
        count = math.prod(shape)
        inside = ((self.words(count) >> _U64(11)).astype(np.float64) + 0.5) * UNIT
        values = -np.log(-np.log(inside))
        return float(values[0]) if size is None else values.reshape(shape)
