"""MC-dropout: the masked step graph, its export and parity, the numpy scorer against a
torch reference (exactly, with the same masks; and in the mean, with torch's own
dropout), `studio eval --mc-dropout` and the uncertainty colours."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from studio.bundle import Bundle
from studio.config import EXPLICIT_CELLS, ModelConfig, TrainConfig
from studio.domains import domain_from_config
from studio.errors import StudioError
from studio.export import _mc_float64_parity, export_mc_dropout, export_run, session_for
from studio.inspection import uncertainty_view
from studio.models import TRAINABLES
from studio.models.recurrent_lm import MaskedStepGraph, RecurrentLM, dropout_masks
from studio.numeric import log_softmax, teacher_forced_log_probs
from studio.runtime import Runtime
from studio.sampling.rng import CounterRNG
from studio.sampling.settings import SampleSettings
from studio.train import train
from studio.uncertainty import MCDropout

CELLS = ("lstm", "gru", "rnn", *EXPLICIT_CELLS)


def config_for(cell: str, dropout: float = 0.3) -> ModelConfig:
    recurrent = 0.2 if cell in EXPLICIT_CELLS else 0.0
    return ModelConfig(
        vocab_size=11,
        cell=cell,
        layers=2,
        hidden_size=16,
        embedding_size=8,
        dropout=dropout,
        recurrent_dropout=recurrent,
    )


def random_masks(sites: dict, batch: int, steps: int, generator: torch.Generator) -> list[torch.Tensor]:
    masks = []
    for per, width in sites.values():
        shape = (batch, steps, width) if per == "time" else (batch, width)
        masks.append(torch.bernoulli(torch.full(shape, 0.7), generator=generator) / 0.7)
    return masks


@pytest.mark.parametrize("cell", CELLS)
def test_masked_graph_with_no_masks_is_the_plain_model_and_masks_change_it(cell):
    torch.manual_seed(0)
    model = RecurrentLM(config_for(cell)).eval()
    graph = MaskedStepGraph(model)
    tokens = torch.randint(0, 11, (3, 7))
    state = model.init_state(3)
    with torch.no_grad():
        plain, plain_state = model(tokens, state)
        ones = [torch.ones_like(m) for m in random_masks(graph.sites, 3, 7, torch.Generator().manual_seed(1))]
        same = graph(tokens, *state, *ones)
        masked = graph(tokens, *state, *random_masks(graph.sites, 3, 7, torch.Generator().manual_seed(1)))
    assert torch.equal(same[0], plain)
    assert all(torch.equal(a, b) for a, b in zip(same[1:], plain_state))
    assert (masked[0] - plain).abs().max() > 1e-3


def test_dropout_sites_follow_the_config():
    assert list(dropout_masks(config_for("lstm"))) == ["mask_input", "mask_layer1", "mask_output"]
    assert list(dropout_masks(config_for("qrnn")))[-2:] == ["mask_recurrent0", "mask_recurrent1"]
    assert dropout_masks(config_for("lstm", dropout=0.0)) == {}
    assert TRAINABLES["categorical"].mc_dropout(RecurrentLM(config_for("gru", dropout=0.0))) is None


@pytest.mark.parametrize("cell", ["lstm", "gru", "qrnn"])
def test_mc_graph_exports_with_parity_and_its_masks_matter(cell, tmp_path):
    torch.manual_seed(0)
    model = RecurrentLM(config_for(cell)).eval()
    record = export_mc_dropout(TRAINABLES["categorical"], model, tmp_path)
    assert record["parity_max_abs_diff"] < 1e-4
    assert set(record["masks"]) == set(dropout_masks(model.config))
    assert record["masks"]["mask_input"]["keep"] == pytest.approx(0.7)
    session = session_for(tmp_path / record["graph"])
    names = [i.name for i in session.get_inputs()]
    assert names[0] == "tokens" and names[-len(record["masks"]) :] == list(record["masks"])
    time = 1 if cell in EXPLICIT_CELLS else 5
    feeds = {"tokens": np.zeros((1, time), np.int64)}
    feeds.update({n: s.numpy() for n, s in zip(model.config.state_names, model.init_state(1))})
    ones = {}
    for name, mask in record["masks"].items():
        shape = (1, time, mask["width"]) if mask["per"] == "time" else (1, mask["width"])
        ones[name] = np.ones(shape, np.float32)
    dropped = {name: np.zeros_like(value) for name, value in ones.items()}
    with torch.no_grad():
        plain = model(torch.zeros((1, time), dtype=torch.long), model.init_state(1))[0].numpy()
    assert np.abs(session.run(["logits"], {**feeds, **ones})[0] - plain).max() < 1e-5
    assert np.abs(session.run(["logits"], {**feeds, **dropped})[0] - plain).max() > 1e-3


@pytest.fixture(scope="module")
def dropout_run(tiny_corpus, tmp_path_factory):
    root = tmp_path_factory.mktemp("mc")
    run = train(
        tiny_corpus,
        root / "run",
        domain_name="chars",
        model_overrides=dict(hidden_size=32, layers=2, embedding_size=16, dropout=0.3),
        train_config=TrainConfig(batch_size=8, seq_len=32, max_steps=30, eval_every=15, seed=5, learning_rate=1e-2),
        quiet=True,
    )
    card = export_run(run.path, root / "export" / "mc", quiet=True)
    return run, Bundle.load(card.parent)


def test_the_card_records_the_mc_graph(dropout_run):
    _, bundle = dropout_run
    record = bundle.card["mc_dropout"]
    assert (bundle.path / record["graph"]).is_file()
    assert record["parity_max_abs_diff"] < 1e-4
    assert [m["keep"] for m in record["masks"].values()] == pytest.approx([0.7] * len(record["masks"]))


def test_no_mc_dropout_leaves_the_graph_out_and_eval_says_so(dropout_run, tiny_corpus, tmp_path):
    run, _ = dropout_run
    result = studio("export", str(run.path), "--out", str(tmp_path / "lean"), "--no-mc-dropout", check=False)
    assert result.returncode == 0, result.stderr
    card = json.loads((tmp_path / "lean" / "card.json").read_text())
    assert "mc_dropout" not in card and sorted(p.name for p in (tmp_path / "lean").iterdir()) == [
        "card.json",
        "model.onnx",
    ]
    refused = studio("eval", str(tmp_path / "lean"), str(tiny_corpus), "--mc-dropout", "3", "--json", check=False)
    assert refused.returncode != 0 and "exported with --no-mc-dropout" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1


def sample_ids(bundle: Bundle, count: int = 300) -> list[int]:
    domain = domain_from_config(bundle.card["domain"])
    return domain.encode("ROMEO:\nBut soft, what light through yonder window breaks?\n" * 6)[:count]


def test_passes_differ_and_a_seed_repeats_them(dropout_run):
    _, bundle = dropout_run
    scorer = MCDropout(bundle)
    ids = sample_ids(bundle)
    scores = scorer.score(ids, 4, seed=3)
    assert scores.log_probs.shape == (4, len(ids) - 1)
    nats = scores.pass_nats()
    assert len(set(np.round(nats, 9))) == 4
    assert np.array_equal(scorer.score(ids, 4, seed=3).log_probs, scores.log_probs)
    assert not np.array_equal(scorer.score(ids, 4, seed=4).log_probs, scores.log_probs)
    means, spreads = scores.token_spread()
    assert means.shape == spreads.shape == (len(ids) - 1,) and spreads.max() > 0


def torch_model(run) -> RecurrentLM:
    best = torch.load(run.best, weights_only=False)
    model = RecurrentLM(ModelConfig.from_dict(best["model"]))
    model.load_state_dict(best["model_state"])
    return model


def test_each_pass_equals_torch_with_the_same_masks(dropout_run):
    run, bundle = dropout_run
    scorer = MCDropout(bundle)
    ids = sample_ids(bundle)
    model = torch_model(run).eval()
    graph = MaskedStepGraph(model)
    steps = len(ids) - 1
    for index in range(3):
        rng = CounterRNG(11, index)  # the scorer's draw for one window: each site in card order
        masks = [torch.from_numpy(scorer._mask(rng, name, steps)) for name in scorer.masks]
        with torch.no_grad():
            logits = graph(torch.tensor([ids[:-1]]), *model.init_state(1), *masks)[0][0].double().numpy()
        expected = log_softmax(logits)[np.arange(steps), ids[1:]]
        assert np.abs(scorer.log_probs(ids, 11, index) - expected).max() < 1e-4


def test_mean_over_passes_agrees_with_torch_dropout(dropout_run):
    """Different random streams, the same distribution: the mean nats of 40 ORT passes and
    of 40 passes of torch in training mode agree within their standard errors."""
    run, bundle = dropout_run
    ids = sample_ids(bundle)
    ours = MCDropout(bundle).score(ids, 40, seed=0).pass_nats()
    model = torch_model(run).train()
    torch.manual_seed(0)
    inputs, targets = torch.tensor([ids[:-1]]), torch.tensor(ids[1:])
    theirs = []
    with torch.no_grad():
        for _ in range(40):
            logits = model(inputs, model.init_state(1))[0][0]
            theirs.append(torch.nn.functional.cross_entropy(logits, targets).item())
    theirs = np.asarray(theirs)
    error = np.sqrt(ours.var(ddof=1) / len(ours) + theirs.var(ddof=1) / len(theirs))
    assert abs(ours.mean() - theirs.mean()) < 4 * error + 1e-3
    assert ours.std() > 0 and theirs.std() > 0
    with torch.no_grad():  # and dropout matters here: the deterministic score sits apart
        plain = torch.nn.functional.cross_entropy(model.eval()(inputs, model.init_state(1))[0][0], targets).item()
    assert ours.mean() > plain


def studio(*args, check=True):
    result = subprocess.run([sys.executable, "-m", "studio", *args], capture_output=True, text=True, timeout=120)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def test_eval_mc_dropout_json_has_both_keys(dropout_run, tiny_corpus):
    _, bundle = dropout_run
    report = json.loads(
        studio("eval", str(bundle.path), str(tiny_corpus), "--split", "val", "--mc-dropout", "3", "--json").stdout
    )
    assert report["mc_dropout_passes"] == 3
    assert report["nats_per_token"] > 0 and report["nats_per_token_std"] > 0
    assert report["nats_per_token_mc_mean"] > 0 and report["nats_per_token_mc_predictive"] > 0
    plain = json.loads(studio("eval", str(bundle.path), str(tiny_corpus), "--split", "val", "--json").stdout)
    assert plain["nats_per_token"] == report["nats_per_token"] and "nats_per_token_std" not in plain


def test_mc_dropout_refusals_are_one_line(dropout_run, tiny_bundle, tiny_corpus):
    _, bundle = dropout_run
    for model, passes, expected in (
        (str(bundle.path), "0", None),
        (str(bundle.path), "101", "MC-dropout passes (--mc-dropout) must be 1 to 100"),
        (str(tiny_bundle), "3", "has no MC-dropout graph"),
    ):
        result = studio("eval", model, str(tiny_corpus), "--mc-dropout", passes, "--json", check=False)
        if expected is None:
            assert result.returncode == 0 and "nats_per_token_std" not in result.stdout
            continue
        assert result.returncode != 0 and "Traceback" not in result.stderr
        assert expected in result.stderr and len(result.stderr.strip().splitlines()) == 1


def copy_bundle(bundle: Bundle, folder):
    folder.mkdir()
    for item in bundle.path.iterdir():
        (folder / item.name).write_bytes(item.read_bytes())
    return folder


def test_a_damaged_mc_graph_is_a_one_line_error(dropout_run, tmp_path):
    _, bundle = dropout_run
    copy = copy_bundle(bundle, tmp_path / "copy")
    (copy / bundle.card["mc_dropout"]["graph"]).write_bytes(b"not an onnx graph")
    with pytest.raises(StudioError, match="damaged"):
        MCDropout(Bundle.load(copy))
    (copy / bundle.card["mc_dropout"]["graph"]).unlink()
    with pytest.raises(StudioError, match="model file missing"):
        Bundle.load(copy)


def test_the_shared_session_is_loaded_once_and_again_after_a_re_export(dropout_run, tmp_path):
    _, bundle = dropout_run
    copy = copy_bundle(bundle, tmp_path / "copy")
    first = MCDropout.shared(Bundle.load(copy))
    assert MCDropout.shared(Bundle.load(copy)) is first
    graph = copy / bundle.card["mc_dropout"]["graph"]
    graph.write_bytes(graph.read_bytes())  # a re-export: same bytes, a new file time
    os.utime(graph, ns=(graph.stat().st_atime_ns, graph.stat().st_mtime_ns + 10**9))
    again = MCDropout.shared(Bundle.load(copy))
    assert again is not first
    ids = sample_ids(bundle, 40)
    assert np.array_equal(again.score(ids, 3, 7).log_probs, first.score(ids, 3, 7).log_probs)
    graph.write_bytes(b"not an onnx graph")
    with pytest.raises(StudioError, match="damaged"):
        MCDropout.shared(Bundle.load(copy))


def test_uncertainty_view_colours_each_generated_token(dropout_run):
    _, bundle = dropout_run
    runtime = Runtime(bundle, precision="fp32")
    domain = domain_from_config(bundle.card["domain"])
    settings = SampleSettings(model=str(bundle.path), prime="ROMEO:", seed=2)
    tokens = domain.encode(" But soft")
    html = uncertainty_view(runtime, domain, settings, tokens, passes=5)
    assert html.count("over 5 passes") == len(tokens)
    assert "ROMEO:" in html and "MC dropout, 5 passes" in html
    spreads = [float(part.split("± ")[1].split(" ")[0]) for part in html.split('title="')[1:]]
    assert len(spreads) == len(tokens) and max(spreads) > 0


def test_write_tab_colours_by_uncertainty_and_refuses_without_the_graph(
    dropout_run, tiny_bundle, monkeypatch, tmp_path
):
    """The Write handler itself (as the server runs it), with the models found through
    $STUDIO_MODELS: one coloured span per generated token, the recipe unchanged."""
    from studio.serve import Batcher
    from web.common import OutputFolders
    from web.write import StopRequests, make_write

    _, bundle = dropout_run
    monkeypatch.setenv("STUDIO_MODELS", f"{bundle.path.parent}:{tiny_bundle.parent}")
    write = make_write(OutputFolders(tmp_path / "out"), StopRequests(), Batcher())
    settings = dict(prime="ROMEO:", temperature=0.9, seed=4, length=40)
    *_, last = write(bundle.path.name, **settings, uncertainty=True, mc_passes=4)
    text, recipe, html, _, _, rendered = last
    generated = len(text) - len("ROMEO:")
    assert rendered and html.count("over 4 passes") == generated > 0
    *_, plain = write(bundle.path.name, **settings)
    assert plain[0] == text and plain[1] == recipe  # the colours change nothing else
    with pytest.raises(StudioError, match="has no MC-dropout graph"):
        next(write(tiny_bundle.name, **settings, uncertainty=True))
    with pytest.raises(StudioError, match=r"MC-dropout passes \(--mc-dropout\) must be 1 to 100"):
        next(write(bundle.path.name, **settings, uncertainty=True, mc_passes=0))


def test_int8_mc_graph_is_smaller_and_close(tmp_path):
    torch.manual_seed(0)
    model = RecurrentLM(
        ModelConfig(vocab_size=40, cell="lstm", layers=2, hidden_size=128, embedding_size=16, dropout=0.2)
    ).eval()
    for name in ("fp32", "int8"):
        (tmp_path / name).mkdir()
    fp32 = export_mc_dropout(TRAINABLES["categorical"], model, tmp_path / "fp32")
    int8 = export_mc_dropout(TRAINABLES["categorical"], model, tmp_path / "int8", int8=True)
    assert fp32["precision"] == "fp32" and int8["precision"] == "int8"
    size = {
        name: (tmp_path / name / record["graph"]).stat().st_size for name, record in (("fp32", fp32), ("int8", int8))
    }
    assert size["int8"] < size["fp32"] / 2
    assert 0 < int8["int8_max_abs_logit_change"] < 0.1


def test_the_shipped_prose_bundle_carries_an_int8_mc_graph():
    bundle = Bundle.load("prose")
    record = bundle.card["mc_dropout"]
    assert record["precision"] == "int8" and record["parity_max_abs_diff"] < 1e-4
    ids = sample_ids(bundle, 200)
    scores = MCDropout(bundle).score(ids, 3, seed=1)
    assert len(set(np.round(scores.pass_nats(), 9))) == 3
    plain = Runtime(bundle)  # the passes scatter around the model without dropout
    deterministic = -teacher_forced_log_probs(plain.logits, plain.init_state(1), ids).mean()
    assert abs(scores.pass_nats().mean() - deterministic) < 0.5


def test_mc_parity_falls_back_to_float64_and_still_tells_other_weights_apart(tmp_path):
    """Past the fp32 tolerance (a wide trained model), the MC-dropout graph is measured
    against float64: onnxruntime must be no further from it than twice torch's own fp32."""
    torch.manual_seed(0)
    model = RecurrentLM(config_for("lstm")).eval()
    for name in ("ours", "theirs"):
        (tmp_path / name).mkdir()
    record = export_mc_dropout(TRAINABLES["categorical"], model, tmp_path / "ours")
    module, _, masks = TRAINABLES["categorical"].mc_dropout(model)
    generator = torch.Generator().manual_seed(4)
    feeds = {"tokens": torch.randint(0, 11, (2, 9), generator=generator)}
    feeds.update(zip(model.config.state_names, model.init_state(2)))
    feeds.update(zip(masks, random_masks(module.sites, 2, 9, generator)))
    session = session_for(tmp_path / "ours" / record["graph"])
    parity = _mc_float64_parity(module, session, [feeds], masks, "time")
    assert parity["against"] == "float64" and 0 < parity["torch_fp32_vs_float64"] < 1e-5
    assert parity["limit"] == max(1e-4, 2 * parity["torch_fp32_vs_float64"])
    assert parity["parity_max_abs_diff"] < parity["limit"]
    torch.manual_seed(1)
    other = RecurrentLM(config_for("lstm")).eval()
    theirs = export_mc_dropout(TRAINABLES["categorical"], other, tmp_path / "theirs")
    wrong = _mc_float64_parity(module, session_for(tmp_path / "theirs" / theirs["graph"]), [feeds], masks, "time")
    assert wrong["parity_max_abs_diff"] > wrong["limit"]
