"""onnxruntime sessions with explicit, named recurrent state.  Torch-free.

``Runtime.run(inputs, state) -> (outputs, next_state)`` where ``inputs`` and
``outputs`` map the card's names to numpy arrays and ``state`` maps each state name
to its array.  ``init_state(batch)`` gives zeros of the card's shapes.

Speed: ``session.run`` is the default path, called as :func:`direct_call` (``Runtime.call``)
on the CPU: the C binding's ``run`` without the Python wrapper's per-call checks, about
3-4 us less per step (of about 90 at batch 1 for the 2x512 int8 prose graph).  An
IOBinding path (``use_binding``: inputs bound in place, onnxruntime writing each output
into a fresh numpy array, so every call still returns new arrays and stepping twice from
one state stays safe) gives byte-identical results but measured 10-25% *more* CPU per
step on this project's 2-core machine (the Python-side binding calls cost more than the
copies they save; reusing output buffers across steps instead saved nothing measurable
and would hand callers arrays that the next step overwrites).  It stays switchable so
`studio bench` can re-check it.

Row exactness: row *i* of a batch is exactly what a batch of one computes, so ``--num 3``
never changes sample 1 and beams score as a single greedy row would.  fp32 batches are
row-exact as they are.  Static int8 graphs (:mod:`studio.quantize`; the card's
``quantization.row_exact``) are too: their activation scales are constants.  Older
dynamic int8 graphs pick one activation scale per tensor per call, so each row of a
batch would depend on the others; for them (``row_by_row``) the runtime runs a batch
one row at a time.  A graph whose token input has a time axis of 1 (static int8, explicit
cells) is stepped one token per call for a longer input.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence

import numpy as np

from .bundle import Bundle
from .errors import StudioError
from .step_draw import TOKEN, with_draw

DTYPES = {"float32": np.float32, "int64": np.int64, "int32": np.int32}
# :meth:`Runtime.prefill` keeps the results of this many recent primes, each of at most
# PREFILL_CACHE_TOKENS ids (a key is the prime itself; a longer one is not kept)
PREFILL_CACHE = 64
PREFILL_CACHE_TOKENS = 4096


def providers_for(device: str) -> list[str]:
    """ORT execution providers for "cpu" or "cuda" (CUDA falls back to CPU with a notice)."""
    import onnxruntime as ort

    if device == "cpu":
        return ["CPUExecutionProvider"]
    if device.startswith("cuda"):
        if "CUDAExecutionProvider" in ort.get_available_providers():
            return ["CUDAExecutionProvider", "CPUExecutionProvider"]
        import sys

        print("notice: onnxruntime has no CUDA provider here (install onnxruntime-gpu); using CPU", file=sys.stderr)
        return ["CPUExecutionProvider"]
    raise StudioError(f"unknown --device {device!r}: use cpu or cuda")


def direct_call(session) -> Callable[[list[str], dict[str, np.ndarray]], list[np.ndarray]]:
    """``session.run(fetch, feeds)`` as a per-token loop wants it: on a CPU-only session,
    the C binding's own ``run`` (the wrapper checks the input names and retries on
    another execution provider when one fails, every call, about 3-4 us at batch 1); the
    wrapper itself where the binding is not there (another onnxruntime) or a GPU provider
    may need its fallback.  Same outputs either way: the wrapper calls the same ``run``."""
    inner = getattr(getattr(session, "_sess", None), "run", None)
    if inner is None or session.get_providers() != ["CPUExecutionProvider"]:
        return session.run
    return lambda fetch, feeds: inner(fetch, feeds, None)


def default_threads() -> int:
    """Intra-op threads: the cores this process may use, at most 4.  Measured on this
    project's 2-core machine, quiet (fp32 2x512 LSTM): two spinning threads give
    6,396 tok/s at batch 1 against 3,512 with one, 23,826 against 12,949 at batch 64,
    and a 1,000-token prefill in 76 ms against 144 (int8 is about even).  On a machine
    busy with other jobs two spinning threads lose badly to one: pass ``threads=1``."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(4, cores))


class Runtime:
    use_binding = False  # class switch so benchmarks and tests can compare both paths

    def __init__(self, bundle: Bundle, device: str = "cpu", precision: str = "auto", threads: int | None = None):
        import onnxruntime as ort

        self.bundle, self.device = bundle, device
        io = bundle.card["io"]
        self.input_names = list(io["inputs"])
        self.state_spec = io["state"]
        self.state_names = list(self.state_spec)
        self.output_names = list(io["outputs"])
        options = ort.SessionOptions()
        options.log_severity_level = 3
        self.threads = threads or default_threads()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        path = bundle.graph_path(precision)
        providers = providers_for(device)
        logits = io["outputs"].get("logits", {}).get("shape", [None])[-1]
        # a categorical step graph is loaded with the plain draw inside (studio/step_draw.py)
        self.vocab_size = logits if isinstance(logits, int) and self.input_names == ["tokens"] else None
        try:
            graph = path.read_bytes() if self.vocab_size else str(path)
            if self.vocab_size:
                graph = with_draw(graph, self.vocab_size)
            self.session = ort.InferenceSession(graph, options, providers=providers)
        except Exception as error:  # onnxruntime raises its own types for corrupt files
            raise StudioError(
                f"cannot load {path} ({str(error).splitlines()[0][:120]}): the model file is damaged; re-export it"
            ) from None
        self.call = direct_call(self.session)
        self._fetch = self.output_names + [f"{n}_out" for n in self.state_names]
        specs = {**io["inputs"], **self.state_spec}
        self._input_dtypes = {name: DTYPES[spec["dtype"]] for name, spec in specs.items()}
        self._input_shapes = {name: spec["shape"] for name, spec in specs.items()}
        graph_time = {i.name: i.shape for i in self.session.get_inputs()}.get("tokens", [None, None])[1]
        if graph_time == 1 and "tokens" in self._input_shapes:  # a one-step graph (static int8)
            self._input_shapes["tokens"] = [self._input_shapes["tokens"][0], 1]
        self._output_specs = [(DTYPES[io["outputs"][n]["dtype"]], io["outputs"][n]["shape"]) for n in self.output_names]
        self._output_specs += [
            (DTYPES[self.state_spec[n]["dtype"]], self.state_spec[n]["shape"]) for n in self.state_names
        ]
        self._bindable = providers[0] == "CPUExecutionProvider"
        graphs = bundle.card["graphs"]
        self.precision = precision if precision != "auto" else ("int8" if "int8" in graphs else "fp32")
        self._batch_axes = {
            name: spec["shape"].index("batch") if "batch" in spec["shape"] else None for name, spec in specs.items()
        }
        quantization = bundle.card.get("quantization") or {}
        self.row_by_row = (
            self.precision == "int8"
            and not quantization.get("row_exact", False)
            and all("batch" in shape for _, shape in self._output_specs)
        )
        self._local = threading.local()  # one IOBinding per thread: bindings are not thread-safe
        self._prefills: OrderedDict[tuple[int, ...], tuple[dict[str, np.ndarray], np.ndarray]] = OrderedDict()
        self._prefill_lock = threading.Lock()

    @property
    def draw_fetch(self) -> list[str] | None:
        """What a sampling loop fetches from :attr:`session` to have the plain draw done
        in the graph (:mod:`studio.step_draw`; feed ``noise`` too): the drawn token ((rows,
        1) int64, the next ``tokens``), the logits, then the next state in card order;
        None where the graph has no draw (not a categorical step graph) or calls go
        through IOBinding."""
        if self.vocab_size is None or self.use_binding:
            return None
        return [TOKEN, "logits"] + [f"{n}_out" for n in self.state_names]

    def init_state(self, batch: int) -> dict[str, np.ndarray]:
        state = {}
        for name, spec in self.state_spec.items():
            shape = [batch if d == "batch" else d for d in spec["shape"]]
            state[name] = np.zeros(shape, dtype=DTYPES[spec["dtype"]])
        return state

    def run(self, inputs: dict[str, np.ndarray], state: dict[str, np.ndarray]):
        feeds = {**inputs, **state}
        batch = self._batch_size(feeds)
        if self.row_by_row and batch > 1:
            rows = [
                self._run_once({name: self._row(name, value, row) for name, value in feeds.items()})
                for row in range(batch)
            ]
            axes = [shape.index("batch") for _, shape in self._output_specs]
            values = [np.concatenate([r[i] for r in rows], axis=axis) for i, axis in enumerate(axes)]
        else:
            values = self._run_once(feeds)
        outputs = dict(zip(self.output_names, values[: len(self.output_names)]))
        next_state = dict(zip(self.state_names, values[len(self.output_names) :]))
        return outputs, next_state

    @property
    def batch_axes(self) -> dict[str, int | None]:
        """Each input's and state's batch axis (None: it has none), by card name."""
        return dict(self._batch_axes)

    @property
    def output_batch_axes(self) -> list[int | None]:
        """Each output's batch axis, in card order."""
        return [shape.index("batch") if "batch" in shape else None for _, shape in self._output_specs]

    def run_values(self, feeds: dict[str, np.ndarray], batch: int) -> list[np.ndarray]:
        """:meth:`run` for a sampling loop, with nothing built per call: ``feeds`` holds
        every input and state array under its card name (``batch`` rows); returns the
        outputs, then the next state, in card order."""
        if (self.row_by_row and batch > 1) or self.use_binding:
            outputs, state = self.run(
                {name: feeds[name] for name in self.input_names}, {name: feeds[name] for name in self.state_names}
            )
            return [*outputs.values(), *state.values()]
        return self.call(self._fetch, feeds)

    def _batch_size(self, feeds: dict[str, np.ndarray]) -> int:
        for name, value in feeds.items():
            axis = self._batch_axes.get(name)
            if axis is not None:
                return int(np.shape(value)[axis])
        return 1

    def _row(self, name: str, value: np.ndarray, row: int) -> np.ndarray:
        axis = self._batch_axes.get(name)
        if axis is None:
            return value
        return np.take(value, [row], axis=axis)

    def _run_once(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        values = self._run_bound(feeds) if self.use_binding and self._bindable else None
        if values is None:
            values = self.call(self._fetch, feeds)
        return values

    def _run_bound(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray] | None:
        """The call through IOBinding, or None when an output's shape is not known
        from the card and the inputs (then ``session.run`` allocates it)."""
        sizes: dict[str, int] = {}
        arrays = {}
        for name, value in feeds.items():
            dtype = self._input_dtypes.get(name)
            if dtype is None:
                return None
            value = np.ascontiguousarray(value, dtype=dtype)
            for dim, size in zip(self._input_shapes[name], value.shape):
                if isinstance(dim, str):
                    sizes[dim] = size
            arrays[name] = value
        outputs = []
        for dtype, shape in self._output_specs:
            concrete = [sizes.get(d) if isinstance(d, str) else d for d in shape]
            if None in concrete:
                return None
            outputs.append(np.empty(concrete, dtype=dtype))
        binding = getattr(self._local, "binding", None)
        if binding is None:
            binding = self._local.binding = self.session.io_binding()
        binding.clear_binding_inputs()  # an input left bound from an earlier call must not leak in
        binding.clear_binding_outputs()
        for name, value in arrays.items():
            binding.bind_cpu_input(name, value)
        for name, value in zip(self._fetch, outputs):
            binding.bind_output(name, "cpu", 0, value.dtype, value.shape, value.ctypes.data)
        self.session.run_with_iobinding(binding)
        return outputs

    # categorical convenience ---------------------------------------------------------
    def logits(self, tokens: np.ndarray, state: dict[str, np.ndarray]):
        """tokens (batch, time) -> logits (batch, time, vocab), next state.  A graph whose
        time axis is 1 (explicit cells) is stepped one token per call."""
        if self._input_shapes["tokens"][1] == 1 and np.shape(tokens)[1] != 1:
            steps = []
            for t in range(np.shape(tokens)[1]):
                logits, state = self.logits(np.asarray(tokens)[:, t : t + 1], state)
                steps.append(logits)
            return np.concatenate(steps, 1), state
        outputs, state = self.run({"tokens": np.ascontiguousarray(tokens, dtype=np.int64)}, state)
        return outputs["logits"], state

    def prefill(self, ids: Sequence[int]) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """(the state after ``ids``, one row; the float64 logits of the token after them,
        shape (1, vocab)): a sampling request's priming.  The results for the
        ``PREFILL_CACHE`` most recent primes are kept, as a server's prefix cache: users of
        one model mostly start from the same prime (the UI's default), and 20 requests
        that join a batch together then prime once.  The call is deterministic, so a kept
        result is the bytes a new call would give; each caller gets its own copies."""
        key = tuple(int(i) for i in ids) if len(ids) <= PREFILL_CACHE_TOKENS else None
        with self._prefill_lock:
            kept = self._prefills.get(key) if key is not None else None
            if kept is not None:
                self._prefills.move_to_end(key)
        if kept is None:
            logits, state = self.logits(np.asarray([ids], dtype=np.int64), self.init_state(1))
            kept = (state, logits[:, -1].astype(np.float64))
            if key is not None:
                with self._prefill_lock:
                    self._prefills[key] = kept
                    while len(self._prefills) > PREFILL_CACHE:
                        self._prefills.popitem(last=False)
        state, last = kept
        return {name: value.copy() for name, value in state.items()}, last.copy()

    def step_logits(self, tokens: np.ndarray, state: dict[str, np.ndarray]):
        """tokens (batch, 1) -> float64 logits (batch, vocab) of the next token, next state:
        the sampling loop's call, with the bookkeeping of :meth:`run` cut to the minimum."""
        if self.row_by_row and len(tokens) > 1 or self.use_binding:
            logits, state = self.logits(tokens, state)
            return logits[:, 0].astype(np.float64), state
        feeds = {"tokens": np.ascontiguousarray(tokens, dtype=np.int64)}
        feeds.update(state)
        values = self.call(self._fetch, feeds)
        names = self.state_names
        return (values[0][:, 0].astype(np.float64), {names[i]: values[i + 1] for i in range(len(names))})

    @staticmethod
    def select(state: dict[str, np.ndarray], rows: np.ndarray) -> dict[str, np.ndarray]:
        """Reorder / repeat batch rows of every state tensor (axis 1 by convention)."""
        return {k: v.take(rows, 1) for k, v in state.items()}  # a new C-ordered array each
