"""What a shell shows about a model before anyone asks it for anything: what its
quality figure means, a short sample of what it makes, and a text it can read.

:func:`quality` turns a card's held-out score into words (bits per character for text,
a density per pen point for strokes), through the model's head; :func:`preview` samples
a few seconds' worth of what a model makes, with the recipe that repeats it; and
:func:`reading_sample` picks a text a model can read for Look inside: the stock text it
finds most familiar, so switching from a code model to a prose model also switches the
text.  Torch-free.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .api import Loaded, bundle_head, load, sample, settings_from
from .bundle import Bundle
from .domains import Medium, domain_class
from .errors import StudioError
from .generate import nats_per_token
from .sampling.settings import SampleSettings, command_line

PREVIEW_SEED = 1
PREVIEW_TOKENS = 160  # a text preview: a few lines
PREVIEW_TEMPERATURE = 0.8
PREVIEW_BARS = 4
PREVIEW_WORDS = "Sequence Studio"  # what a handwriting model writes for its preview
READ_TOKENS = 400  # a text written by the model itself, when it can read no stock text

# Look inside's stock texts: one per kind of corpus the shipped models know.
READING_SAMPLES = (
    '''def greet(name, times=2):
    """Say hello."""
    for i in range(times):
        if name:
            print("Hello, " + name + "!")
    return {"name": name, "said": times}
''',
    """ROMEO:
But soft, what light through yonder window breaks?
It is the east, and Juliet is the sun.

JULIET:
O Romeo, Romeo! wherefore art thou Romeo?
Deny thy father and refuse thy name.
""",
    """# Streams

A *stream* hands over data in chunks. Use `pipe()` to connect two of them:

* a readable stream emits `'data'` events;
* a writable stream accepts `write(chunk)` calls.

```js
source.pipe(destination);
```
""",
)


@dataclass(frozen=True)
class Quality:
    """A bundle's held-out score in words: ``figure`` ("1.98 bits per character") and
    ``gloss`` (one sentence on what it means); both "" when the card has none."""

    nats: float | None
    unit: str
    figure: str
    gloss: str


def quality(bundle: Bundle) -> Quality:
    """The card's validation score, explained by the bundle's head for its domain's unit."""
    nats, _ = bundle.validation()
    unit = domain_class(bundle.card["domain"]["name"]).unit_name
    if nats is None:
        return Quality(None, unit, "", "")
    figure, gloss = bundle_head(bundle).explain(float(nats), unit)
    return Quality(float(nats), unit, figure, gloss)


@dataclass(frozen=True)
class Preview:
    """A short sample of what a model makes: ``text`` (the sample for text models, its
    summary otherwise), ``image`` (a piano roll or the drawing, as PNG; None for text)
    and ``command``, the `studio sample` line that makes the same sample."""

    text: str
    image: Path | None
    command: str


def preview_settings(loaded: Loaded) -> SampleSettings:
    """Fixed, seeded settings for a quick sample of ``loaded``'s medium."""
    domain = loaded.domain
    options: dict = {"seed": PREVIEW_SEED}
    if domain.medium is Medium.TEXT:
        options.update(length=PREVIEW_TOKENS, temperature=PREVIEW_TEMPERATURE)
    elif domain.medium is Medium.MUSIC:
        options.update(bars=PREVIEW_BARS, length=None)
    elif domain.conditional:
        options.update(text=PREVIEW_WORDS)
    return settings_from(loaded.name, **options)


def preview(model: str | Path, folder: Path) -> Preview:
    """Sample ``model`` with :func:`preview_settings`; music and drawings are also saved
    as ``folder/<name>-preview.png``."""
    loaded = load(model)
    settings = preview_settings(loaded)
    [item] = sample(settings=settings)
    image = None
    if loaded.domain.medium is not Medium.TEXT:
        image = Path(folder) / f"{loaded.name}-preview.png"
        item.output.save(image)
    return Preview(item.text, image, command_line(settings))


def readable(loaded: Loaded, text: str) -> bool:
    """Whether ``loaded`` reads every part of ``text`` (no character or word outside its
    vocabulary)."""
    try:
        return bool(text) and bool(loaded.domain.prime_ids(settings_from(loaded.name, prime=text)))
    except StudioError:
        return False


def reading_sample(loaded: Loaded, current: str | None = None) -> str:
    """A text model's text for Look inside.  ``current`` stays when it is the user's own
    text (not a stock sample) and the model reads it; otherwise the stock sample the
    model reads with the fewest nats per token, and when it reads none of them, a text it
    writes itself."""
    if current and current not in READING_SAMPLES and readable(loaded, current):
        return current
    scored = []
    for text in READING_SAMPLES:
        if readable(loaded, text):
            ids = loaded.domain.prime_ids(settings_from(loaded.name, prime=text))
            scored.append((nats_per_token(loaded.runtime, ids)[0], text))
    if scored:
        return min(scored)[1]
    [written] = sample(
        settings=settings_from(loaded.name, seed=PREVIEW_SEED, length=READ_TOKENS, temperature=PREVIEW_TEMPERATURE)
    )
    return written.text
