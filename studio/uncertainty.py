"""MC-dropout uncertainty (Gal and Ghahramani 2016), numpy and onnxruntime only.

A bundle exported from a model trained with dropout carries a second step graph,
``card["mc_dropout"]["graph"]``, that takes the dropout masks as inputs (input, between
layers and output masks per token, as ``nn.Dropout`` draws them in training; explicit
cells trained with recurrent dropout add one mask per layer and row).  :class:`MCDropout`
feeds a text through it ``passes`` times, each pass with its own masks drawn from
:class:`~studio.sampling.rng.CounterRNG` stream ``pass`` of ``seed``, so every figure is
reproducible.  A mask keeps a unit with the card's probability ``keep`` and scales it by
``1 / keep``, exactly as training did.

What comes out, per pass, is the log-probability of every next token.  The spread across
passes is the model's uncertainty about its own weights: ``studio eval --mc-dropout N``
reports the mean nats per token of each pass and their standard deviation, and the web's
confidence view can colour each token by the spread of its probability.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np

from .bundle import Bundle
from .errors import StudioError
from .numeric import logsumexp, teacher_forced_log_probs
from .runtime import default_threads, providers_for
from .sampling.rng import CounterRNG

MAX_PASSES = 100
SCORE_WINDOW = 4096  # tokens per call of a graph with a time axis
SHARED_SESSIONS = 4  # MC graphs kept loaded for the web's uncertainty view


def require_passes(passes: int) -> None:
    if not 1 <= passes <= MAX_PASSES:
        raise StudioError(f"MC-dropout passes (--mc-dropout) must be 1 to {MAX_PASSES} (got {passes})")


def require_mc_graph(bundle: Bundle) -> dict:
    """The card's ``mc_dropout`` record, or a one-line error saying why there is none."""
    spec = bundle.card.get("mc_dropout")
    if not isinstance(spec, dict):
        raise StudioError(
            f"{bundle.name} has no MC-dropout graph: it was trained without dropout, exported with "
            "--no-mc-dropout, or exported before MC-dropout existed (export its run again with `studio export RUN`)"
        )
    return spec


@dataclass(frozen=True)
class MCScores:
    """``log_probs`` (passes, tokens): each pass's log p of every next token."""

    log_probs: np.ndarray

    @property
    def passes(self) -> int:
        return int(self.log_probs.shape[0])

    def pass_nats(self) -> np.ndarray:
        """(passes,) mean nats per token of each pass."""
        return -self.log_probs.mean(1)

    def predictive_nats(self) -> float:
        """Mean nats per token of the MC predictive distribution (each token's probability
        averaged over the passes): the figure MC-dropout offers as a better estimate."""
        return float(-(logsumexp(self.log_probs, axis=0) - np.log(self.passes)).mean())

    def token_spread(self) -> tuple[np.ndarray, np.ndarray]:
        """(mean, standard deviation) over the passes of each token's probability."""
        probabilities = np.exp(self.log_probs)
        return probabilities.mean(0), probabilities.std(0)

    def report(self) -> dict[str, Any]:
        nats = self.pass_nats()
        return {
            "mc_dropout_passes": self.passes,
            "nats_per_token_mc_mean": round(float(nats.mean()), 5),
            "nats_per_token_std": round(float(nats.std(ddof=1)) if self.passes > 1 else 0.0, 5),
            "nats_per_token_mc_predictive": round(self.predictive_nats(), 5),
        }


class MCDropout:
    """The bundle's MC-dropout graph in an onnxruntime session (:meth:`shared`: one kept
    loaded per bundle, for a server that colours every sample)."""

    @classmethod
    def shared(cls, bundle: Bundle, device: str = "cpu", threads: int | None = None) -> MCDropout:
        """The bundle's session, loaded once and kept (the last ``SHARED_SESSIONS``
        used; keyed as :func:`studio.api.load` keys its runtimes, on the file's time, so
        a re-exported graph is loaded afresh).  onnxruntime sessions may run from several
        threads at once."""
        spec = require_mc_graph(bundle)
        try:
            stat = (bundle.path / spec["graph"]).stat()
        except OSError:
            return cls(bundle, device, threads)  # let the constructor name what is missing
        return _kept_session(str(bundle.path.resolve()), stat.st_mtime_ns, stat.st_size, device, threads)

    def __init__(self, bundle: Bundle, device: str = "cpu", threads: int | None = None):
        import onnxruntime as ort

        spec = require_mc_graph(bundle)
        self.bundle, self.masks = bundle, spec["masks"]
        self.state_spec = bundle.card["io"]["state"]
        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.intra_op_num_threads = threads or default_threads()
        path = bundle.path / spec["graph"]
        try:
            self.session = ort.InferenceSession(str(path), options, providers=providers_for(device))
        except Exception as error:  # onnxruntime raises its own types for corrupt files
            raise StudioError(
                f"cannot load {path} ({str(error).splitlines()[0][:120]}): the model file is damaged; re-export it"
            ) from None
        shapes = {i.name: i.shape for i in self.session.get_inputs()}
        self.one_step = shapes["tokens"][1] == 1
        self.state_names = list(self.state_spec)

    def init_state(self) -> dict[str, np.ndarray]:
        return {
            name: np.zeros([1 if d == "batch" else d for d in spec["shape"]], np.float32)
            for name, spec in self.state_spec.items()
        }

    def _mask(self, rng: CounterRNG, name: str, steps: int | None) -> np.ndarray:
        spec = self.masks[name]
        shape = (1, steps, spec["width"]) if steps is not None else (1, spec["width"])
        keep = float(spec["keep"])
        return ((rng.random(shape) < keep) / keep).astype(np.float32)

    def log_probs(self, ids, seed: int, pass_index: int, restart: int | None = None) -> np.ndarray:
        """(len(ids) - 1,) log p of each next token in pass ``pass_index`` (teacher forced
        from a fresh state, the masks of CounterRNG stream ``pass_index`` of ``seed``; with
        ``restart``, a fresh state again at each of those ids, as ``studio eval`` scores)."""
        rng = CounterRNG(seed, pass_index)
        fixed = {name: self._mask(rng, name, None) for name, spec in self.masks.items() if spec["per"] == "row"}
        per_token = [name for name, spec in self.masks.items() if spec["per"] == "time"]

        def step(tokens: np.ndarray, state: dict[str, np.ndarray]):
            if self.one_step and tokens.shape[1] > 1:
                pieces = []
                for t in range(tokens.shape[1]):
                    logits, state = step(tokens[:, t : t + 1], state)
                    pieces.append(logits)
                return np.concatenate(pieces, 1), state
            feeds = {"tokens": tokens.astype(np.int64), **state, **fixed}
            feeds.update({name: self._mask(rng, name, tokens.shape[1]) for name in per_token})
            values = self.session.run(None, feeds)
            return values[0], dict(zip(self.state_names, values[1:]))

        return teacher_forced_log_probs(step, self.init_state(), ids, SCORE_WINDOW, restart)

    def score(self, ids, passes: int, seed: int = 0, restart: int | None = None) -> MCScores:
        require_passes(passes)
        if len(ids) < 2:
            raise StudioError("the evaluation text is too short (needs at least 2 tokens)")
        return MCScores(np.stack([self.log_probs(ids, seed, k, restart) for k in range(passes)]))


@functools.lru_cache(maxsize=SHARED_SESSIONS)
def _kept_session(path: str, mtime_ns: int, size: int, device: str, threads: int | None) -> MCDropout:
    return MCDropout(Bundle.load(path), device, threads)
