"""PyTorch figures for ``studio bench``: a batch-1 sampling loop as a user would write
it, and the same loop tuned, on the model rebuilt from the bundle's graph."""

from __future__ import annotations

from ..bundle import Bundle
from ..errors import StudioError
from ..runtime import Runtime
from .onnx_to_torch import check_parity, torch_model_from_onnx
from .timing import chunk_length, probe, rate

PARITY_TOLERANCE = 1e-3  # max |logit difference| for the comparison to be like with like


def torch_rate(model, seconds: float, best: bool) -> float:
    """Batch-1 sampling loop in PyTorch: naive (as a user writes it) or tuned."""
    import torch

    if best:
        torch.backends.mkldnn.enabled = False  # oneDNN's RNN is slow for single steps
        context = torch.inference_mode
    else:
        context = torch.no_grad
    generator = torch.Generator().manual_seed(0)

    def loop(steps: int) -> int:
        with context():
            state = model.init_state(1)
            token = torch.zeros(1, 1, dtype=torch.long)
            for _ in range(steps):
                logits, state = model(token, state)
                token = torch.multinomial(torch.softmax(logits[:, -1], -1), 1, generator=generator)
        return steps

    try:
        step_seconds = probe(lambda: loop(1), tries=5)
        return rate(lambda: loop(chunk_length(step_seconds, seconds)), seconds)
    finally:
        torch.backends.mkldnn.enabled = True


def torch_figures(bundle: Bundle, runtime: Runtime, seconds: float) -> dict:
    """``torch``, ``torch_parity_max_abs``, ``torch_naive_tok_s``, ``torch_best_tok_s`` and
    ``torch_best_threads`` (the best of one thread and torch's default)."""
    import torch

    model = torch_model_from_onnx(bundle)
    drift = check_parity(model, runtime)
    if drift > PARITY_TOLERANCE:
        raise StudioError(
            f"the PyTorch model rebuilt from {bundle.name} differs from onnxruntime "
            f"by {drift:.1e}: cannot compare like with like"
        )
    figures = {"torch": torch.__version__, "torch_parity_max_abs": float(f"{drift:.2e}")}
    figures["torch_naive_tok_s"] = round(torch_rate(model, seconds, best=False), 1)
    default_threads = torch.get_num_threads()
    best = {}
    try:
        for threads in sorted({1, default_threads}):
            torch.set_num_threads(threads)
            best[threads] = torch_rate(model, seconds, best=True)
    finally:
        torch.set_num_threads(default_threads)
    threads = max(best, key=best.get)
    figures["torch_best_tok_s"] = round(best[threads], 1)
    figures["torch_best_threads"] = threads
    return figures
