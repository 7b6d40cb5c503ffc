"""`studio bench`: sampling speed of one bundle, PyTorch against onnxruntime, in one run.

Every figure comes from the same weights: the PyTorch model is rebuilt from the
bundle's fp32 ONNX initialisers (ONNX LSTM gates are i, o, f, c; PyTorch's i, f, g, o)
and checked against onnxruntime before anything is timed.  A bundle shipped int8-only
gets its fp32 graph exported into a temporary folder from ``runs/NAME/best.pt``; one
without an int8 graph gets it quantised on the fly; ``int8_top1_agreement`` confirms
the two graphs hold the same weights.

What is timed (tokens per second are generated tokens over wall time; each figure is
the median over short chunks inside ``seconds``, so a burst of load elsewhere moves
it less):

* ``torch_naive_tok_s``: a PyTorch step loop as a user would write it (``no_grad``,
  default threads and backends), sampling with ``torch.multinomial``, batch 1;
* ``torch_best_tok_s``: the same loop with oneDNN off, ``inference_mode`` and the
  best thread count (``torch_best_threads``);
* ``ort_fp32_tok_s`` / ``ort_int8_tok_s``: the product's sampling loop
  (:class:`studio.generate.Generation`, default settings, batch 1) on onnxruntime;
* ``ort_{fp32,int8}_graph_only_tok_s``: the bare step graph at batch 1 (no sampling,
  no Python bookkeeping): the ceiling for the two figures above;
* ``ort_{fp32,int8}_b{8,64}_tok_s``: the same with ``--num 8`` / ``--num 64`` (one call
  per step for fp32 and static int8; an older dynamic int8 graph runs row by row so every
  row is exact, see :mod:`studio.runtime`, and then ``ort_int8_b64_one_call_tok_s`` is
  the single-call figure for comparison);
* ``loop_vs_graph_{fp32,int8}``: loop ÷ bare graph, timed in alternating chunks; the
  median over the chunk pairs of each pair's ratio (both chunks of a pair see the same
  load), so it can differ slightly from the ratio of the two medians above;
* ``int8_b64_vs_b1``: batch 64 ÷ batch 1, int8, the same kind of median over chunk pairs
  (batch-64 chunks alternating with batch-1 chunks);
* ``int8_vs_fp32``: the ratio of the figures above; ``int8_scheme``,
  ``int8_variant``, ``int8_batches`` say which int8 graph was timed (``studio quantize``
  times every variant where it runs and keeps the fastest that holds quality, see
  :mod:`studio.quantize`; ``int8_variants_at_quantize`` are those figures), ``cpu_flags``
  the vector extensions its kernels can use;
* ``serve_1_tok_s`` / ``serve_20_tok_s``: aggregate tokens per second through the web
  server's batching path (:class:`studio.serve.Batcher`, in process) with 1 and with 20
  concurrent streams of 300 tokens, each its own seed, the median of 9 runs
  (``serve_precision``: what the server runs, the bundle's row-exact int8 where it has
  one, else fp32); these streams do end at a separator.  ``serve_20_vs_1`` is the
  median over the 9 turns (one run of each count) of each turn's ratio;
* ``beam8_steps_s``: ``--beam 8`` search steps per second (default precision), and
  ``beam8_vs_int8`` the median over chunk pairs of beam steps ÷ int8 batch-1 tokens
  (beam chunks alternating with batch-1 chunks);
* ``prefill_1000_ms``: priming with 1,000 tokens through the full-sequence call
  (``prefill_1000_step_ms``: the same through 1,000 step calls, for comparison);
* ``reference_gemv_us``: a numpy matrix-vector product the size of one LSTM layer's
  recurrent weights, so that figures from a busy or slow machine can be recognised;
* ``cold_start_s``: wall time of ``studio sample --length 200`` in a fresh process
  (median of 3 after one warm-up run).

Generation stops at a document separator; here the separator does not end a sample, so
every run generates exactly the tokens asked for.

The package, one idea a module: :mod:`.timing` (timing primitives, the cold start),
:mod:`.runtime_rates` (onnxruntime figures), :mod:`.serve_rates` (the batching
server), :mod:`.onnx_to_torch` (the PyTorch model rebuilt from the graph),
:mod:`.torch_rates` (PyTorch figures), :mod:`.bundles` (the fp32, int8 and random
stand-in bundles the figures need), :mod:`.measure` (all figures of one bundle) and
:mod:`.report` (``studio bench``: the JSON or the table).
"""

from .measure import KEYS, measure
from .report import run_bench

__all__ = ["KEYS", "measure", "run_bench"]
