"""Sampling in the browser against the CLI, measured in one run on this machine.

    python scripts/bench_browser.py [--model prose] [--length 1000] [--seeds 20]

Exports MODEL with `studio export-web`, serves it from 127.0.0.1, and drives Debian's
Chromium (headless, Playwright) through it: page load to the first generated character,
characters per second of one stream (fp32 and int8), the bytes the page transferred,
and over ``--seeds`` seeds how often the browser's text equals the CLI's (fp32: the
equality the studio promises; int8: measured, not promised).  The CLI figures come from
the same sampler in this process (onnxruntime, its default threads and one thread),
right after.  Prints a table and the CPU flags.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import json
import re
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from studio.api import bundle_domain, load_bundle  # noqa: E402
from studio.generate import Generation  # noqa: E402
from studio.runtime import Runtime  # noqa: E402
from studio.sampling.settings import SampleSettings  # noqa: E402
from studio.webexport import CHROMIUM, CHROMIUM_ARGS, export_web  # noqa: E402

PRIME = "ROMEO:"
TEMPERATURE = 0.8

AGREEMENT_JS = """
async ([graph, seeds, length, prime, temperature]) => {
  ort.env.wasm.numThreads = 1;
  ort.env.wasm.wasmPaths = new URL("onnxruntime-web/", document.baseURI).href;
  const card = await (await fetch("model/card.json")).json();
  const model = await StudioSampler.TextModel.load(ort, "model/" + graph, card);
  const texts = [];
  for (const seed of seeds) texts.push(await StudioSampler.generateText(model, {prime, temperature, seed, length}));
  return texts;
}
"""


RULES_JS = """
([vocab, steps]) => {
  const S = StudioSampler;
  const rules = S.buildRules(S.checkSettings({temperature: 0.8, top_k: 40, top_p: 0.9, repetition_penalty: 1.1,
                                               no_repeat_ngram_size: 4, seed: 1}));
  const rng = new S.CounterRNG(1, 0);
  const history = Array.from({length: 300}, (_, i) => (i * 7919) % vocab);
  const logits = Float64Array.from({length: vocab}, (_, i) => Math.sin(i * 12.9898) * 4);
  const started = performance.now();
  let sink = 0;
  for (let i = 0; i < steps; i++) sink += S.draw(S.applyRules(rules, history, logits), rng);
  return [(performance.now() - started) * 1000 / steps, sink];
}
"""


def python_rules_us(vocab: int, steps: int) -> float:
    import numpy as np

    from studio.sampling.rng import CounterRNG
    from studio.sampling.rules import apply_rules, build_rules, draw

    settings = SampleSettings(temperature=0.8, top_k=40, top_p=0.9, repetition_penalty=1.1, no_repeat_ngram_size=4)
    rules = build_rules(settings)
    history = (np.arange(300)[None, :] * 7919) % vocab
    logits = (np.sin(np.arange(vocab) * 12.9898) * 4)[None, :]
    generator = [CounterRNG(1)]
    started = time.perf_counter()
    for _ in range(steps):
        draw(apply_rules(rules, history, logits), generator)
    return (time.perf_counter() - started) * 1e6 / steps


class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def cpu_flags() -> str:
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    return " ".join(sorted(set(re.findall(r"\bavx[^ \n]*", text))))


def browser_figures(url: str, length: int, seeds: int, precision: str, graph: str) -> dict:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        context = browser.new_context()  # a fresh cache: every byte is transferred
        page = context.new_page()
        transferred = [0]
        hosts = set()

        def finished(request):
            sizes = request.sizes()
            transferred[0] += sizes["responseBodySize"] + sizes["responseHeadersSize"]
            hosts.add(request.url.split("/")[2])

        page.on("requestfinished", finished)
        query = f"?autorun=1&precision={precision}&prime={PRIME}&temp={TEMPERATURE}&seed=1&length={length}"
        page.goto(url + query, timeout=120_000)
        page.wait_for_selector("#output[data-done='1'], #output[data-error='1']", timeout=600_000)
        run = json.loads(page.evaluate("JSON.stringify(window.studioRun)"))
        page_text = page.evaluate("document.getElementById('output').textContent")
        page_bytes = transferred[0]  # the page's own load and run, before the agreement runs
        rules_us = {vocab: page.evaluate(RULES_JS, [vocab, 2000])[0] for vocab in (66, 466)}
        texts = page.evaluate(AGREEMENT_JS, [graph, list(range(seeds)), 300, PRIME, TEMPERATURE]) if seeds else []
        browser.close()
    return {
        "first_token_ms": run["firstTokenMs"],
        "load_ms": run["loadMs"],
        "chars_per_s": run["charsPerSecond"],
        "bytes": page_bytes,
        "hosts": sorted(hosts),
        "page_text": page_text,
        "texts": texts,
        "rules_us": rules_us,
    }


def cli_figures(model: str, precision: str, length: int, seeds: int, threads: int | None) -> dict:
    bundle = load_bundle(model)
    runtime = Runtime(bundle, precision=precision, threads=threads)
    domain = bundle_domain(bundle)
    settings = SampleSettings(model=model, prime=PRIME, temperature=TEMPERATURE, seed=1, length=length)
    Generation(runtime, domain, settings.with_(length=50)).run()  # warm up
    started = time.perf_counter()
    text = Generation(runtime, domain, settings).run()[0].text
    seconds = time.perf_counter() - started
    texts = [
        Generation(runtime, domain, settings.with_(seed=seed, length=300)).run()[0].text + "\n" for seed in range(seeds)
    ]
    return {"chars_per_s": length / seconds, "threads": runtime.threads, "text": text + "\n", "texts": texts}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="prose")
    parser.add_argument("--length", type=int, default=1000)
    parser.add_argument("--seeds", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        site = export_web(args.model, Path(folder) / "site")
        handler = functools.partial(Quiet, directory=str(site.folder))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{server.server_port}/"
        graphs = json.loads((site.folder / "model" / "card.json").read_text())["graphs"]
        rows = []
        for precision, graph in graphs.items():
            web = browser_figures(url, args.length, args.seeds, precision, graph)
            cli = cli_figures(args.model, precision, args.length, args.seeds, None)
            single = cli_figures(args.model, precision, args.length, 0, 1)
            same = sum(a == b for a, b in zip(web["texts"], cli["texts"]))
            rows.append((precision, web, cli, single, same))
        server.shutdown()
    print(
        f"model {args.model}; prime {PRIME!r}, temperature {TEMPERATURE}, {args.length} characters; CPU {cpu_flags()}"
    )
    print(
        f"{'precision':9} {'browser ch/s':>12} {'CLI ch/s':>9} {'CLI 1-thread':>12} {'load->1st char ms':>17} "
        f"{'graph load ms':>13} {'bytes':>11} {'same text':>10}"
    )
    for precision, web, cli, single, same in rows:
        print(
            f"{precision:9} {web['chars_per_s']:12.0f} {cli['chars_per_s']:9.0f} {single['chars_per_s']:12.0f} "
            f"{web['first_token_ms']:17.0f} {web['load_ms']:13.0f} {web['bytes']:11,} "
            f"{same:>4}/{args.seeds:<5}"
        )
        identical = "identical" if web["page_text"] == cli["text"] else "DIFFERENT"
        print(
            f"  {precision}: the timed {args.length}-character text is {identical} to the CLI's; hosts {web['hosts']}"
        )
    print(f"CLI threads: default {rows[0][2]['threads']}, then 1; browser: onnxruntime-web wasm, 1 thread")
    web = rows[0][1]
    for vocab in (66, 466):
        numpy_us = python_rules_us(vocab, 2000)
        print(
            f"rules (repetition penalty, 4-gram ban over 300 tokens, temperature, top-k 40, top-p 0.9) + draw, "
            f"vocab {vocab}: JS {web['rules_us'][vocab]:.0f} us/token, numpy {numpy_us:.0f} us/token"
        )


if __name__ == "__main__":
    main()
