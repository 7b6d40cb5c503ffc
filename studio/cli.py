"""The `studio` command line: thin shells that parse options and call one library function.

Importing this module imports neither torch, onnx nor gradio; each command imports
what it needs when it runs.
"""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from .errors import StudioError, require

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Sequence Studio: train, export and sample recurrent models of text, code, music and handwriting.",
)

# music options `sample` and `eval` share
PitchTempOption = Annotated[
    float,
    typer.Option(
        "--pitch-temp",
        help="Music: temperature of the choice among note-ons alone (below 1: fewer unlikely notes, rhythm "
        "untouched; 1: off).",
    ),
]
LockstepOption = Annotated[
    bool,
    typer.Option(
        "--lockstep",
        help="Music: no note starts while an earlier one still sounds, as in a fiddle tune (the model releases "
        "a held note first; notes struck together stay allowed).",
    ),
]


def fail(message: str, code: int = 1) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def friendly(command):
    """Turn StudioError (and Ctrl-C) into one line on stderr and a non-zero exit."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except StudioError as error:
            fail(str(error))
        except KeyboardInterrupt:
            fail("interrupted", 130)
        except BrokenPipeError:
            sys.stderr.close()
            raise typer.Exit(0) from None

    return wrapper


# --- train / export ---------------------------------------------------------------


@app.command()
@friendly
def train(
    corpus: Annotated[Optional[Path], typer.Argument(help="File or folder to train on (recursive).")] = None,
    resume: Annotated[
        Optional[Path], typer.Option(help="Continue the run in this folder exactly where it stopped.")
    ] = None,
    name: Annotated[
        Optional[str], typer.Option(help="Run name: runs/NAME and export/NAME (default: the corpus name).")
    ] = None,
    domain: Annotated[
        Optional[str], typer.Option(help="chars | words | music | strokes (default: from file types).")
    ] = None,
    vocab_size: Annotated[int, typer.Option(help="Words domain: vocabulary cap, unknown token included.")] = 10_000,
    beats: Annotated[
        bool,
        typer.Option(
            "--beats/--no-beats",
            help="Music domain: a BEAT event at every quarter-note line inside a bar, so the model "
            "reads its place in the bar instead of summing shifts.",
        ),
    ] = False,
    model_head: Annotated[
        Optional[str],
        typer.Option(
            "--model",
            help="The model head, where a domain offers several: strokes from a .npz train `mixture` "
            "(Graves MDN-LSTM, the default) or `vrnn` (variational RNN, Chung et al. 2015).",
        ),
    ] = None,
    cell: Annotated[
        str,
        typer.Option(help="lstm | gru | rnn (fused) | lnlstm (layer-normalised LSTM) | sru | qrnn | rwa (explicit)."),
    ] = "lstm",
    layers: Annotated[int, typer.Option(help="Stacked recurrent layers.")] = 2,
    hidden_size: Annotated[int, typer.Option(help="Units per recurrent layer.")] = 512,
    embedding_size: Annotated[int, typer.Option(help="Embedding width.")] = 64,
    dropout: Annotated[float, typer.Option(help="Dropout on inputs, between layers and on outputs.")] = 0.25,
    tie_weights: Annotated[bool, typer.Option(help="Share the embedding and output weights.")] = False,
    recurrent_dropout: Annotated[
        float,
        typer.Option(help="Variational dropout on the recurrent state, one mask per row and window (explicit cells)."),
    ] = 0.0,
    weight_drop: Annotated[
        float,
        typer.Option(
            help="DropConnect on the hidden-to-hidden weights of a fused cell (lstm, gru, rnn): one mask per "
            "training step, as AWD-LSTM; off in evaluation and export."
        ),
    ] = 0.0,
    batch_size: Annotated[int, typer.Option(help="Parallel streams per step (per process under DDP).")] = 64,
    seq_len: Annotated[int, typer.Option(help="Truncated-BPTT window length.")] = 128,
    lr: Annotated[float, typer.Option(help="Peak AdamW learning rate.")] = 2e-3,
    weight_decay: Annotated[float, typer.Option(help="AdamW weight decay.")] = 0.01,
    warmup_steps: Annotated[int, typer.Option(help="Linear warm-up steps before cosine decay.")] = 100,
    min_lr_ratio: Annotated[
        float,
        typer.Option(
            help="Where the cosine decay ends, as a fraction of --lr (reached at --max-steps; "
            "size --max-steps to the budget so that a --max-minutes stop comes after it)."
        ),
    ] = 0.1,
    clip: Annotated[float, typer.Option(help="Gradient clipping by global norm.")] = 1.0,
    max_steps: Annotated[Optional[int], typer.Option(help="Stop after this many optimiser steps.")] = None,
    max_minutes: Annotated[
        Optional[float], typer.Option(help="Stop (with a checkpoint) after this many minutes.")
    ] = None,
    epochs: Annotated[
        float, typer.Option(help="Passes over the training text (when --max-steps is not given).")
    ] = 10.0,
    eval_every: Annotated[int, typer.Option(help="Validate and checkpoint every N steps.")] = 200,
    patience: Annotated[int, typer.Option(help="Early stop after N evaluations without improvement.")] = 5,
    val_fraction: Annotated[float, typer.Option(help="Last fraction of the tokens held out for validation.")] = 0.1,
    held_out: Annotated[
        str,
        typer.Option(
            help="tail: the validation part is the corpus's last files in name order; random: the files are "
            "read in a fixed hashed order, so it is a random draw of files (`studio eval --split val` follows "
            "the card)."
        ),
    ] = "tail",
    seed: Annotated[int, typer.Option(help="Seed for initialisation and dropout.")] = 1337,
    device: Annotated[
        Optional[str], typer.Option(help="cpu | cuda | auto (default: cpu; with --resume, the run's own device).")
    ] = None,
    transpose: Annotated[int, typer.Option(help="Music: transposition augmentation, +-N semitones.")] = 5,
    mixtures: Annotated[int, typer.Option(help="Strokes: Gaussian components of the mixture-density head.")] = 20,
    window_gaussians: Annotated[
        int, typer.Option(help="Strokes (text-conditioned): Gaussians of the attention window.")
    ] = 10,
    max_points: Annotated[int, typer.Option(help="Strokes: longest sequence trained on, in points.")] = 240,
    val_sequences: Annotated[int, typer.Option(help="Strokes: held-out sequences scored at each evaluation.")] = 256,
    latent_size: Annotated[int, typer.Option(help="Strokes, --model vrnn: latent variables per point.")] = 16,
    feature_size: Annotated[
        int, typer.Option(help="Strokes, --model vrnn: width of the point and latent feature networks.")
    ] = 128,
    kl_warmup: Annotated[
        int, typer.Option(help="--model vrnn: the KL term's weight rises linearly from 0 to 1 over N steps (0: off).")
    ] = 0,
    ema: Annotated[
        float,
        typer.Option(
            help="Keep an exponential moving average of the weights with this decay per step (e.g. 0.999; "
            "0: off); validation, best.pt and the export use the averaged weights."
        ),
    ] = 0.0,
    ema_warmup: Annotated[
        float,
        typer.Option(
            help="With --ema: the decay at step s is min(DECAY, (1 + s) / (W + s)), so until that cap the "
            "average spans about the last s / (W - 1) steps; a smaller W (above 1) averages longer, sooner."
        ),
    ] = 10.0,
    shift_windows: Annotated[
        bool,
        typer.Option(
            help="Token models: start each pass's truncated-BPTT windows at a different seeded offset "
            "(0 to --seq-len - 1), so the places where the gradient stops move between passes."
        ),
    ] = False,
    scheduled_sampling: Annotated[
        float,
        typer.Option(
            help="Token models: feed the model its own sampled token instead of the true one with a "
            "probability that rises linearly from 0 at the first step to P at the last."
        ),
    ] = 0.0,
    precision: Annotated[
        str,
        typer.Option(
            help="auto | fp32 | bf16: the forward pass's autocast dtype (weights and optimiser stay fp32). "
            "auto: bf16 (or fp16 with loss scaling) on CUDA, fp32 on CPU; bf16 on a CPU with native "
            "bf16 (AVX512-BF16 or AMX) trains about 1.6x faster, elsewhere it is emulated and slower."
        ),
    ] = "auto",
    stop_after: Annotated[Optional[int], typer.Option(help="Pause after N steps of this call (resume later).")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Bundle folder to export to (default export/NAME).")] = None,
    quantize: Annotated[Optional[str], typer.Option(help="Also write an int8 graph: int8.")] = None,
    int8_only: Annotated[bool, typer.Option(help="With --quantize int8, ship only the int8 graph.")] = False,
    export: Annotated[bool, typer.Option(help="Export a bundle when training finishes.")] = True,
    nproc: Annotated[int, typer.Option(help="Processes for DDP on this machine (runs torchrun).")] = 1,
    runs_dir: Annotated[Path, typer.Option(help="Where run folders go.")] = Path("runs"),
    cache: Annotated[
        bool,
        typer.Option(
            help="Text and music: tokenise the corpus once into the token cache and train from a memory map "
            "(--no-cache: read it into memory, the ids kept in the checkpoint)."
        ),
    ] = True,
    cache_dir: Annotated[
        Optional[Path],
        typer.Option(
            help="Token cache folder (default $STUDIO_CACHE_DIR, else ~/.cache/sequence-studio; "
            "with --resume, the run's own)."
        ),
    ] = None,
    quiet: Annotated[bool, typer.Option(help="No progress bar.")] = False,
):
    """Train a model on a corpus (then export it to export/NAME): text by characters or
    words, music events, or pen strokes (a folder with words.txt trains text-conditioned
    handwriting, a stroke .npz unconditional doodles)."""
    require(nproc >= 1, f"--nproc must be at least 1 (got {nproc})")
    if nproc > 1:
        return _torchrun(nproc, device or "cpu")
    from .config import TrainConfig
    from .token_cache import CacheSettings
    from .training import run_training

    if resume is None and corpus is None:
        raise StudioError("give a corpus to train on (e.g. `studio train corpora/shakespeare`) or --resume RUN")
    config = TrainConfig(
        batch_size=batch_size,
        seq_len=seq_len,
        learning_rate=lr,
        weight_decay=weight_decay,
        warmup_steps=warmup_steps,
        min_lr_ratio=min_lr_ratio,
        clip=clip,
        max_steps=max_steps,
        max_minutes=max_minutes,
        epochs=epochs,
        eval_every=eval_every,
        patience=patience,
        val_fraction=val_fraction,
        held_out=held_out,
        seed=seed,
        device=device,
        transpose=transpose,
        max_points=max_points,
        val_sequences=val_sequences,
        scheduled_sampling=scheduled_sampling,
        ema=ema,
        ema_warmup=ema_warmup,
        shift_windows=shift_windows,
        kl_warmup=kl_warmup,
        precision=precision,
    )
    model = dict(
        cell=cell,
        layers=layers,
        hidden_size=hidden_size,
        embedding_size=embedding_size,
        dropout=dropout,
        tie_weights=tie_weights,
        recurrent_dropout=recurrent_dropout,
        weight_drop=weight_drop,
        mixtures=mixtures,
        window_gaussians=window_gaussians,
        latent_size=latent_size,
        feature_size=feature_size,
    )
    run_training(
        corpus=corpus,
        resume=resume,
        name=name,
        domain=domain,
        domain_options={"vocab_size": vocab_size, **({"beats": True} if beats else {})},
        model=model,
        config=config,
        stop_after=stop_after,
        out=out,
        quantize=quantize,
        export=export,
        int8_only=int8_only,
        runs_dir=runs_dir,
        quiet=quiet,
        cache=CacheSettings(enabled=cache, folder=cache_dir),
        head=model_head,
    )
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        _leave_worker()


def _leave_worker() -> None:
    """End a torchrun worker whose work is done and saved, skipping the interpreter's
    teardown.  Gloo's transport threads can still be joinable while the C++ runtime
    destroys its statics at exit, and then the process aborts ("terminate called without
    an active exception": once in this project's two-rank test runs on 2026-12-05) after
    a clean run; torchrun reads that as a failure of the whole job."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _torchrun(nproc: int, device: str) -> None:
    """Re-launch this very command under torchrun with ``nproc`` processes on this machine
    (several machines: run torchrun yourself, see the README's "Scaling up")."""
    import signal
    import subprocess

    if "WORLD_SIZE" in os.environ:
        raise StudioError("already running under torchrun: drop --nproc")
    if device != "cpu":  # fail here in one line rather than in every worker
        import torch

        from .devices import resolve_device

        if resolve_device(device).type == "cuda" and torch.cuda.device_count() < nproc:
            raise StudioError(
                f"--nproc {nproc} wants one GPU per process but {torch.cuda.device_count()} are visible: lower --nproc"
            )

    args = list(sys.argv[1:])
    cleaned, skip = [], False
    for a in args:
        if skip:
            skip = False
            continue
        if a == "--nproc":
            skip = True
            continue
        if a.startswith("--nproc="):
            continue
        cleaned.append(a)
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={nproc}",
        "-m",
        "studio",
        *cleaned,
    ]
    env = dict(os.environ)
    # share this machine's cores between the processes (torchrun's default is 1 thread each)
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    # Ctrl-C reaches torchrun and the workers too, and they stop together with a checkpoint:
    # wait for them instead of killing torchrun (a handler, not SIG_IGN, which children inherit)
    previous = signal.signal(signal.SIGINT, lambda signum, frame: None)
    try:
        code = subprocess.call(command, env=env)
    finally:
        signal.signal(signal.SIGINT, previous)
    raise typer.Exit(code)


@app.command("export")
@friendly
def export_command(
    run: Annotated[Path, typer.Argument(help="Run folder (runs/NAME).")],
    out: Annotated[Optional[Path], typer.Option(help="Bundle folder (default export/NAME).")] = None,
    quantize: Annotated[Optional[str], typer.Option(help="Also write an int8 graph: int8.")] = None,
    int8_only: Annotated[bool, typer.Option(help="With --quantize int8, ship only the int8 graph.")] = False,
    fp32_only: Annotated[
        bool, typer.Option(help="With --quantize int8, measure int8 (card) but ship only fp32.")
    ] = False,
    fp16_weights: Annotated[
        bool,
        typer.Option(
            help="Round the weights to float16 and store the fp32 graph's weights so: it still computes in "
            "float32, from a file half the size (the card records the held-out cost)."
        ),
    ] = False,
    mc_dropout: Annotated[
        bool,
        typer.Option(
            help="Also write the MC-dropout graph (for `studio eval --mc-dropout`) when the model has dropout; "
            "--no-mc-dropout leaves it out (a smaller bundle)."
        ),
    ] = True,
):
    """Export a trained run to an ONNX bundle with its card."""
    from .training import export_any

    export_any(
        run,
        out or Path("export") / run.name,
        quantize=quantize,
        drop_fp32=int8_only,
        drop_int8=fp32_only,
        fp16_weights=fp16_weights,
        mc_dropout=mc_dropout,
    )


@app.command("export-web")
@friendly
def export_web_command(
    model: Annotated[str, typer.Argument(help="Text bundle (name under export/, or path) to put on the page.")],
    out: Annotated[Path, typer.Option(help="Folder for the static site (new or empty).")],
    force: Annotated[bool, typer.Option(help="Replace an earlier export in --out.")] = False,
):
    """Write a static site that samples MODEL in the visitor's browser (onnxruntime-web)."""
    from .webexport import export_web

    site = export_web(model, out, force=force)
    print(
        f"wrote {site.folder} ({len(site.files)} files, {site.total_bytes / 1e6:.1f} MB): "
        "serve it with any static file server"
    )


@app.command("quantize")
@friendly
def quantize_command(
    model: Annotated[str, typer.Argument(help="Bundle name (under export/) or path; needs its fp32 graph.")],
    corpus: Annotated[
        Optional[Path],
        typer.Option(help="Corpus folder it trained on (default: the path in its card)."),
    ] = None,
):
    """Re-quantise a bundle's int8 graph in place: row-exact static int8 calibrated on the
    training split of its corpus (dynamic int8 where static does not hold quality)."""
    from .bundle import resolve
    from .export import requantize_bundle

    report = requantize_bundle(resolve(model), corpus, say=lambda message: print(f"  {message}", flush=True))
    print(
        f"{model}: int8 {report['scheme']}{' ' + report['variant'] if 'variant' in report else ''}, "
        f"Δ {report.get('delta_nats_per_token', float('nan')):+.5f} nats/token, "
        f"top-1 agreement {report.get('top1_agreement', float('nan')):.4f}"
    )


# --- sample / eval / models -----------------------------------------------------------


@app.command()
@friendly
def sample(
    model: Annotated[str, typer.Option(help="Bundle name (under export/) or path.")] = "prose",
    temperature: Annotated[
        float, typer.Option("--temp", "--temperature", help="Softmax temperature; 0 means greedy.")
    ] = 1.0,
    seed: Annotated[int, typer.Option(help="Random seed: same seed and settings, same output.")] = 0,
    prime: Annotated[Optional[str], typer.Option(help="Text to start from.")] = None,
    prime_file: Annotated[
        Optional[Path],
        typer.Option("--prime-file", "--prime-midi", help="File to start from (text, or MIDI for music models)."),
    ] = None,
    length: Annotated[
        Optional[int],
        typer.Option("--length", "--max-new-tokens", help="Tokens to generate (default 500; music: until --bars)."),
    ] = None,
    num: Annotated[int, typer.Option(help="Number of samples (one batch), or results with --beam.")] = 1,
    best_of: Annotated[
        int,
        typer.Option(
            help="Draw this many for each sample and keep the one the model finds likeliest "
            "(mean log-probability per token; 1: off).",
        ),
    ] = 1,
    greedy: Annotated[bool, typer.Option(help="Always take the most likely token.")] = False,
    top_k: Annotated[int, typer.Option(help="Keep the k most likely tokens (0: off).")] = 0,
    top_p: Annotated[float, typer.Option(help="Keep the smallest set with probability mass >= p.")] = 1.0,
    repetition_penalty: Annotated[float, typer.Option(help="Penalise tokens already seen (1.0: off).")] = 1.0,
    no_repeat_ngram: Annotated[int, typer.Option(help="Ban repeating any n-gram of this size (0: off).")] = 0,
    beam: Annotated[int, typer.Option(help="Beam search with N beams (num_beams).")] = 1,
    length_penalty: Annotated[float, typer.Option(help="Beam ranking: score / length ** penalty.")] = 1.0,
    stochastic: Annotated[
        bool, typer.Option("--sample", help="With --beam: stochastic beam search (Gumbel-top-k).")
    ] = False,
    branch_factor: Annotated[int, typer.Option(help="With --beam: magenta-style branches per beam.")] = 1,
    steps_per_iteration: Annotated[int, typer.Option(help="With --beam: sampled steps per branch.")] = 1,
    stop: Annotated[
        Optional[list[str]],
        typer.Option(help="Stop when this string appears (repeatable); \\n is a newline, \\t a tab, \\\\ a backslash."),
    ] = None,
    bars: Annotated[
        Optional[int],
        typer.Option(
            help="Music: bars to compose; with --prime-midi, new bars after the primer. The piece does not "
            "end before them, unless it reaches --length events first (20,000 by default with --bars, "
            "about 400 bars of chorale), and then says so."
        ),
    ] = None,
    tempo: Annotated[Optional[float], typer.Option(help="Music: tempo in bpm.")] = None,
    key: Annotated[Optional[str], typer.Option(help="Music: keep notes in this scale, e.g. 'D minor'.")] = None,
    metre: Annotated[
        Optional[str],
        typer.Option(
            "--metre",
            "--time-signature",
            help="Music: every bar in this time signature, e.g. 3/4 or 6/8 (one the model's corpus uses; "
            "default: the model's choice, or the primer's).",
        ),
    ] = None,
    pitch_temp: PitchTempOption = 1.0,
    lockstep: LockstepOption = False,
    wav: Annotated[bool, typer.Option(help="Music: also write a WAV beside --out.")] = False,
    piano_roll: Annotated[bool, typer.Option(help="Music: also write a piano-roll PNG beside --out.")] = False,
    text: Annotated[Optional[str], typer.Option(help="Handwriting: the text to write.")] = None,
    bias: Annotated[float, typer.Option(help="Handwriting: legibility bias (0: wild, 3: neat).")] = 1.0,
    style: Annotated[Optional[int], typer.Option(help="Handwriting: stored style to imitate.")] = None,
    style_file: Annotated[
        Optional[Path],
        typer.Option(
            help="Handwriting: write in your own hand: strokes you wrote, as SVG (as studio writes it), "
            "a JSON list of strokes of [x, y] points, or InkML. Give --style-text too."
        ),
    ] = None,
    style_text: Annotated[
        Optional[str], typer.Option(help="Handwriting: what --style-file says, exactly (a word or two).")
    ] = None,
    page_width: Annotated[
        int, typer.Option(help="Handwriting: page width in pixels (200-2400); lines fill it. 0: one model line a line.")
    ] = 800,
    hand_per_line: Annotated[
        bool,
        typer.Option(
            "--hand-per-line",
            help="Handwriting: write every piece in its own hand instead of the first one's "
            "(with --page-width 0, how lines were written before one-hand priming; what 'Run in my browser' draws).",
        ),
    ] = False,
    stroke_width: Annotated[float, typer.Option(help="Handwriting: pen width.")] = 2.0,
    color: Annotated[str, typer.Option(help="Handwriting: ink colour.")] = "#1a1a2e",
    attention_plot: Annotated[
        Optional[Path], typer.Option(help="Handwriting: save the attention alignment PNG.")
    ] = None,
    out: Annotated[
        Optional[Path], typer.Option(help="Write the result here (.txt, .mid, .svg, .png, .gif ...).")
    ] = None,
    json_lines: Annotated[bool, typer.Option("--json", help="Print one JSON object per sample.")] = False,
    device: Annotated[str, typer.Option(help="cpu | cuda (onnxruntime-gpu).")] = "cpu",
    precision: Annotated[str, typer.Option(help="auto | fp32 | int8.")] = "auto",
):
    """Generate from a model (torch-free, onnxruntime)."""
    from .api import settings_from
    from .sample_cli import run_sample
    from .sampling.settings import DEFAULT_LENGTH, unescape_stop

    settings = settings_from(
        model,
        temperature=temperature,
        seed=seed,
        prime=prime,
        prime_file=str(prime_file) if prime_file else None,
        length=length if length is not None else (None if bars else DEFAULT_LENGTH),
        num=num,
        best_of=best_of,
        greedy=greedy,
        top_k=top_k,
        top_p=top_p,
        repetition_penalty=repetition_penalty,
        no_repeat_ngram_size=no_repeat_ngram,
        num_beams=beam,
        length_penalty=length_penalty,
        stochastic_beams=stochastic,
        branch_factor=branch_factor,
        steps_per_iteration=steps_per_iteration,
        stop=tuple(unescape_stop(text) for text in stop or ()),
        bars=bars,
        tempo=tempo,
        key=key,
        metre=metre,
        pitch_temperature=pitch_temp,
        lockstep=lockstep,
        text=text,
        bias=bias,
        style=style,
        style_file=str(style_file) if style_file else None,
        style_text=style_text,
        page_width=page_width,
        hand_per_line=hand_per_line,
        stroke_width=stroke_width,
        color=color,
        device=device,
        precision=precision,
    )
    run_sample(settings, out=out, json_lines=json_lines, wav=wav, piano_roll=piano_roll, attention_plot=attention_plot)


@app.command("eval")
@friendly
def eval_command(
    model: Annotated[str, typer.Argument(help="Bundle name or path.")],
    corpus: Annotated[Path, typer.Argument(help="File or folder to score.")],
    split: Annotated[
        str,
        typer.Option(
            help="all | val (the last --val-fraction of the tokens, with the files in the order the model was "
            "trained on: the card's --held-out; music compares the pieces wholly inside it)."
        ),
    ] = "all",
    val_fraction: Annotated[float, typer.Option(help="Held-out fraction for --split val.")] = 0.1,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    device: Annotated[str, typer.Option(help="cpu | cuda.")] = "cpu",
    precision: Annotated[str, typer.Option(help="auto | fp32 | int8.")] = "auto",
    temperature: Annotated[
        float, typer.Option("--temp", "--temperature", help="Music: temperature of the generated pieces.")
    ] = 1.0,
    samples: Annotated[
        Optional[int],
        typer.Option(
            "--samples", "--n", help="Music: pieces to generate and compare (default 50; 100 with --two-sample)."
        ),
    ] = None,
    bars: Annotated[
        int,
        typer.Option(
            help="Music: bars per generated piece; 0: each piece as long as the model makes it (it ends the "
            "piece itself, as the corpus's pieces end).",
        ),
    ] = 16,
    seed: Annotated[int, typer.Option(help="Seed of the generated pieces (music) and of --mc-dropout's masks.")] = 0,
    two_sample: Annotated[
        bool,
        typer.Option(
            "--two-sample",
            help="Music: can a classifier tell the generated pieces from the corpus's? 0.5 = not at all, 1.0 = always.",
        ),
    ] = False,
    two_sample_beats: Annotated[
        int, typer.Option(help="Music: --two-sample cuts every piece to its first this many beats.")
    ] = 48,
    two_sample_runs: Annotated[
        int,
        typer.Option(
            help="Music: repeat --two-sample on N sets generated with seeds --seed.. --seed+N-1; the accuracy "
            "is their mean, with its standard error (one set's figure moves by several hundredths from seed "
            "to seed)."
        ),
    ] = 1,
    match_lengths: Annotated[
        bool,
        typer.Option(
            "--match-lengths",
            help="Music, with --two-sample: each generated piece is as many bars long as a corpus piece "
            "drawn for it (within --two-sample-beats), instead of --bars for all.",
        ),
    ] = False,
    best_of: Annotated[
        int,
        typer.Option(
            help="Music: each generated piece is the likeliest of N drawn for it (as studio sample --best-of)."
        ),
    ] = 1,
    top_p: Annotated[
        float, typer.Option(help="Music: nucleus sampling of the generated pieces (as studio sample --top-p).")
    ] = 1.0,
    pitch_temp: PitchTempOption = 1.0,
    lockstep: LockstepOption = False,
    mc_dropout: Annotated[
        int,
        typer.Option(
            help="Token models trained with dropout: also score N passes with dropout active (MC-dropout) "
            "and report the spread of their nats per token (nats_per_token_std); --seed picks the masks."
        ),
    ] = 0,
):
    """Score a model on a corpus: nats and bits per token (onnxruntime); for music also
    the MusPy-style metrics of generated pieces beside the corpus's."""
    import json

    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from .api import evaluate

    progress = Progress(
        TextColumn("[bold]generating sets for the two-sample test"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
        disable=not (two_sample and two_sample_runs > 1),
    )
    task = progress.add_task("runs", total=two_sample_runs)
    with progress:
        report = evaluate(
            model,
            corpus,
            device=device,
            precision=precision,
            split=split,
            val_fraction=val_fraction,
            temperature=temperature,
            samples=samples,
            bars=bars,
            seed=seed,
            two_sample=two_sample,
            two_sample_beats=two_sample_beats,
            mc_dropout=mc_dropout,
            match_lengths=match_lengths,
            two_sample_runs=two_sample_runs,
            best_of=best_of,
            top_p=top_p,
            pitch_temperature=pitch_temp,
            lockstep=lockstep,
            on_run=lambda done: progress.update(task, completed=done),
        )
    if json_out:
        typer.echo(json.dumps(report))
        return
    from rich.table import Table

    table = Table(title=f"{report.get('model', model)} on {corpus}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in report.items():
        if name not in ("model", "corpus", "two_sample_features"):
            table.add_row(name, f"{value:,.4f}" if isinstance(value, float) else str(value))
    Console().print(table)
    if report.get("two_sample_features"):
        separating = Table(title="features that tell generated from real (effect: in pooled standard deviations)")
        for column in ("feature", "generated", "corpus", "effect"):
            separating.add_column(column, justify="left" if column == "feature" else "right")
        for row in report["two_sample_features"]:
            separating.add_row(
                row["name"], f"{row['generated']:,.3f}", f"{row['corpus']:,.3f}", f"{row['effect']:+.2f}"
            )
        Console().print(separating)


@app.command()
@friendly
def models(json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False):
    """List model bundles with domain, size and validation figure."""
    import json

    from .api import list_models

    rows = list_models()
    if json_out:
        typer.echo(json.dumps(rows))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="model bundles")
    for column in ("name", "domain", "size MB", "graphs", "validation", "train min", "path"):
        table.add_column(column)
    for r in rows:
        if "error" in r:
            table.add_row(r["name"], "[red]damaged[/]", "", "", r["error"], "", r["path"])
        else:
            table.add_row(
                r["name"],
                r["domain"],
                f"{r['size_mb']:.2f}",
                r["graphs"],
                "-" if r["validation"] is None else f"{r['validation']:.4f} {r['unit']}",
                str(r["train_minutes"] or "-"),
                r["path"],
            )
    Console().print(table)


@app.command()
@friendly
def bench(
    model: Annotated[
        str, typer.Option(help="Bundle to benchmark (a run folder beside it is used for torch).")
    ] = "prose",
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    seconds: Annotated[float, typer.Option(help="Time budget per measurement.")] = 3.0,
    shape: Annotated[
        Optional[str],
        typer.Option(
            help="Time a randomly initialised LSTM of this shape (e.g. 2x512) with the model's "
            "vocabulary instead of its trained weights."
        ),
    ] = None,
):
    """Measure sampling speed: PyTorch vs onnxruntime fp32/int8, batches, beams, prefill, cold start."""
    from .bench import run_bench

    run_bench(model, json_out=json_out, seconds=seconds, shape=shape)


@app.command()
@friendly
def web(
    host: Annotated[
        str,
        typer.Option(
            help="Interface to bind (loopback unless you say otherwise; any other needs --auth or --no-auth)."
        ),
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 7860,
    auth: Annotated[
        Optional[list[str]],
        typer.Option(
            help="USER:PASSWORD a browser or client must give (repeatable; $STUDIO_WEB_AUTH may hold them "
            "too, one per line)."
        ),
    ] = None,
    auth_file: Annotated[
        Optional[Path], typer.Option(help="File with one USER:PASSWORD per line (keeps the password out of `ps`).")
    ] = None,
    no_auth: Annotated[
        bool, typer.Option("--no-auth", help="Serve another interface without a password (prints a warning).")
    ] = False,
    allow_training: Annotated[
        bool, typer.Option("--allow-training", help="Keep the Train tab when serving another interface.")
    ] = False,
    corpus_root: Annotated[
        Optional[list[Path]],
        typer.Option(help="Folder whose subfolders the Train tab lists as corpora, beside ./corpora (repeatable)."),
    ] = None,
):
    """Serve the Gradio studio (Write, Compose, Handwrite, Look inside, Train, Models)."""
    from web.app import launch

    launch(
        host=host,
        port=port,
        auth=tuple(auth or ()),
        auth_file=auth_file,
        no_auth=no_auth,
        allow_training=allow_training,
        corpus_roots=tuple(corpus_root or ()),
    )


# --- token cache ------------------------------------------------------------------------

cache_app = typer.Typer(
    no_args_is_help=True, help="Show or free the token cache (corpora tokenised once for training)."
)
app.add_typer(cache_app, name="cache")
CacheDirOption = Annotated[
    Optional[Path], typer.Option(help="Token cache folder (default $STUDIO_CACHE_DIR, else ~/.cache/sequence-studio).")
]


@cache_app.command("list")
@friendly
def cache_list(
    cache_dir: CacheDirOption = None, json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False
):
    """List cached corpora: key, domain, corpus, tokens and size on disk."""
    import json

    from .token_cache import CacheSettings, list_caches

    root = CacheSettings(folder=cache_dir).root()
    rows = list_caches(root)
    if json_out:
        typer.echo(json.dumps(rows))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"token cache {root}: {sum(r['bytes'] for r in rows) / 1e6:,.1f} MB")
    for column in ("key", "state", "domain", "tokens", "MB", "built", "corpus"):
        table.add_column(column)
    for r in rows:
        table.add_row(
            r["key"], r["state"], r["domain"], f"{r['tokens']:,}", f"{r['bytes'] / 1e6:,.1f}", r["built"], r["corpus"]
        )
    Console().print(table)


@cache_app.command("clear")
@friendly
def cache_clear(
    keys: Annotated[Optional[list[str]], typer.Argument(help="Caches to delete (default: all).")] = None,
    cache_dir: CacheDirOption = None,
):
    """Delete token caches (all, or the KEYS given); one being built is kept."""
    from .token_cache import CacheSettings, clear_caches

    root = CacheSettings(folder=cache_dir).root()
    removed, busy, freed = clear_caches(root, keys or ())
    typer.echo(
        f"removed {len(removed)} token cache(s) from {root}, freed {freed / 1e6:,.1f} MB"
        + (f"; kept {len(busy)} being built: {', '.join(busy)}" if busy else "")
    )


def main() -> None:
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    app()


if __name__ == "__main__":
    main()
