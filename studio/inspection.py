"""Looking inside a text model: what single recurrent cells track, and how sure the
model was of each token.  numpy and a :class:`~studio.runtime.Runtime`; no torch.

Cells (Karpathy, Johnson & Fei-Fei 2015, "Visualizing and Understanding Recurrent
Networks"; Strobelt et al., LSTMVis): :func:`record_activations` feeds a text through a
bundle one token at a time with ``runtime.logits(token[None, None], state)`` and keeps
every state tensor after each token; a *cell* is one unit of one state tensor in one
layer (``c`` and ``h`` for an LSTM).  :func:`text_features` gives simple per-token
features of the text (inside quotes, position in the line, indentation, bracket depth)
and :func:`rank_cells` orders cells by the absolute Pearson correlation of their
activation with each.  :func:`look_inside` is all of it for the web's Look inside tab.

Confidence: :func:`confidence_view` colours a sample's tokens by the raw model's
probability of each (:func:`token_log_probs`, teacher forced); :func:`uncertainty_view`
colours them by the spread of that probability over MC-dropout passes
(:mod:`studio.uncertainty`).

``domain`` is always the bundle's own (what ``runtime`` was exported from).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import StudioError
from .numeric import teacher_forced_log_probs
from .text_view import activation_html, confidence_html, uncertainty_html
from .uncertainty import MCDropout

UNCERTAINTY_PASSES = 10  # MC-dropout passes behind the web's uncertainty colours
MAX_TOKENS = 3000  # longest text looked inside (one step call per token)
TOP_CELLS = 8  # ranked cells per feature
CONFIDENCE_WINDOW = 512  # tokens per teacher-forced call when scoring a sample
OPENERS, CLOSERS = "([{", ")]}"


@dataclass(frozen=True)
class Activations:
    """``values`` (T, cells): every state unit after reading each of the T tokens,
    whose texts are ``pieces``; ``labels`` names each cell (``"c layer 1 unit 17"``)."""

    pieces: list[str]
    values: np.ndarray
    labels: list[str]


def record_activations(runtime, domain, text: str) -> Activations:
    """Step the model through ``text`` from a fresh document (after the separator)."""
    ids = domain.encode(text)
    if not ids:
        raise StudioError("give some text to look inside")
    if len(ids) > MAX_TOKENS:
        raise StudioError(f"at most {MAX_TOKENS} tokens here (got {len(ids)}): shorten the text")
    state = runtime.init_state(1)
    _, state = runtime.logits(np.asarray([[domain.separator_id]]), state)
    names = sorted(state)
    labels = [
        f"{name} layer {layer + 1} unit {unit}"
        for name in names
        for layer in range(state[name].shape[0])
        for unit in range(state[name].shape[-1])
    ]
    rows = []
    for token in ids:
        _, state = runtime.logits(np.asarray([[token]], dtype=np.int64), state)
        rows.append(np.concatenate([state[name][:, 0, :].ravel() for name in names]))  # [L, B, H] -> L*H
    return Activations([domain.token_text(t) for t in ids], np.asarray(rows, dtype=np.float64), labels)


def text_features(pieces: list[str]) -> dict[str, np.ndarray]:
    """Per-token features of the text read so far (each token included):
    inside a double-quoted string, characters since the line began, the line's leading
    whitespace, and bracket nesting depth."""
    in_quotes = column = indent = depth = 0
    leading = True
    rows = []
    for piece in pieces:
        for ch in piece:
            if ch == "\n":
                column, indent, leading = 0, 0, True
                continue
            column += 1
            if leading and ch in " \t":
                indent += 1
            else:
                leading = False
            if ch == '"':
                in_quotes ^= 1
            elif ch in OPENERS:
                depth += 1
            elif ch in CLOSERS:
                depth = max(0, depth - 1)
        rows.append((in_quotes, column, indent, depth))
    table = np.asarray(rows, dtype=np.float64).reshape(-1, 4)
    return {
        "inside quotes": table[:, 0],
        "line length so far": table[:, 1],
        "indentation": table[:, 2],
        "bracket depth": table[:, 3],
    }


def correlations(values: np.ndarray, feature: np.ndarray) -> np.ndarray:
    """Pearson r of each column of ``values`` (T, cells) with ``feature`` (T,); 0 where
    either side is constant."""
    centred = values - values.mean(0)
    target = feature - feature.mean()
    scale = np.sqrt((centred**2).sum(0) * (target**2).sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (centred * target[:, None]).sum(0) / scale
    return np.nan_to_num(r)


def rank_cells(activations: Activations, top: int = TOP_CELLS) -> list[list]:
    """Rows ``[feature, cell index, cell label, r]``, the ``top`` cells per feature by |r|;
    features constant over the text (no quotes in it, say) are left out."""
    rows = []
    for feature, series in text_features(activations.pieces).items():
        if np.ptp(series) == 0:
            continue
        r = correlations(activations.values, series)
        for index in np.argsort(-np.abs(r))[:top]:
            rows.append([feature, int(index), activations.labels[index], round(float(r[index]), 3)])
    return rows


def look_inside(runtime, domain, text: str, cell: int) -> tuple[str, list[list], int]:
    """(``text`` coloured by ``cell``'s activation as HTML, :func:`rank_cells`'s table,
    the number of cells) for a text bundle's ``runtime``."""
    activations = record_activations(runtime, domain, text)
    count = activations.values.shape[1]
    if not 0 <= cell < count:
        raise StudioError(f"cell must be 0 to {count - 1} for {runtime.bundle.name} (got {cell})")
    html = activation_html(activations.pieces, activations.values[:, cell], activations.labels[cell])
    return html, rank_cells(activations), count


def token_log_probs(runtime, ids: list[int], window: int = CONFIDENCE_WINDOW) -> np.ndarray:
    """(len(ids) - 1,) float64: the raw model's log-probability of each id after the
    first given all before it, teacher forced from a fresh state, ``window`` tokens a
    call."""
    return teacher_forced_log_probs(runtime.logits, runtime.init_state(1), ids, window)


def confidence_view(runtime, domain, settings, tokens: list[int]) -> str:
    """HTML of a sample: its shown prime in grey, then each generated token of ``tokens``
    coloured by the raw model's probability of it after the prime and the tokens before
    (``settings``: the sample's SampleSettings, which give the prime)."""
    prime_ids = list(domain.prime_ids(settings))
    probabilities = (
        np.exp(token_log_probs(runtime, prime_ids + list(tokens)))[-len(tokens) :] if tokens else np.zeros(0)
    )
    shown_prime = domain.decode(prime_ids[domain.hidden_prefix(prime_ids, settings) :])
    return confidence_html(shown_prime, [domain.token_text(t) for t in tokens], probabilities)


def uncertainty_view(runtime, domain, settings, tokens: list[int], passes: int = UNCERTAINTY_PASSES) -> str:
    """HTML of a sample as :func:`confidence_view`, each generated token coloured by the
    spread (standard deviation) of its probability over ``passes`` MC-dropout passes,
    the masks seeded by the sample's seed."""
    prime_ids = list(domain.prime_ids(settings))
    shown_prime = domain.decode(prime_ids[domain.hidden_prefix(prime_ids, settings) :])
    if not tokens:
        return uncertainty_html(shown_prime, [], np.zeros(0), np.zeros(0), passes)
    scores = MCDropout.shared(runtime.bundle, runtime.device, runtime.threads).score(
        prime_ids + list(tokens), passes, settings.seed
    )
    means, spreads = scores.token_spread()
    count = len(tokens)
    return uncertainty_html(
        shown_prime, [domain.token_text(t) for t in tokens], means[-count:], spreads[-count:], passes
    )
