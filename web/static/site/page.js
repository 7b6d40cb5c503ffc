/* The exported page: settings from the form or the URL (prime, temp, seed, length, top_k,
 * top_p; also repetition_penalty, no_repeat_ngram, stop, precision), text streamed into
 * #output.  With autorun=1 it generates at once and sets data-done="1" on #output when
 * the text is complete (data-error="1" and the message in #status on failure).
 * window.studioRun holds the timings of the last run (see README "Sampling in the browser"). */
(async function () {
  "use strict";
  const S = globalThis.StudioSampler;
  const $ = (id) => document.getElementById(id);
  const output = $("output");
  const status = $("status");
  const button = $("generate");
  const fields = { prime: "prime", temperature: "temp", seed: "seed", length: "length", top_k: "top_k", top_p: "top_p" };
  const models = {}; // precision -> TextModel, each loaded once
  let card;
  let extra = {}; // settings given only in the URL (penalty, n-gram, stop)

  ort.env.wasm.numThreads = 1; // no SharedArrayBuffer needed, so any static server will do
  ort.env.wasm.proxy = false;
  ort.env.wasm.wasmPaths = new URL("onnxruntime-web/", document.baseURI).href;

  function fail(error) {
    const message = error && error.message ? error.message : String(error);
    status.textContent = "error: " + message;
    status.className = "error";
    output.dataset.error = "1";
    button.disabled = false;
  }

  function formSettings() {
    const number = (id) => Number($(id).value);
    return {
      ...extra,
      prime: $("prime").value,
      temperature: number("temp"),
      seed: number("seed"),
      length: number("length"),
      top_k: number("top_k"),
      top_p: number("top_p"),
    };
  }

  async function model(precision) {
    if (!models[precision]) {
      const started = performance.now();
      status.textContent = `Loading the ${precision} graph...`;
      models[precision] = await S.TextModel.load(ort, "model/" + card.graphs[precision], card);
      window.studioRun.loadMs = performance.now() - started;
    }
    return models[precision];
  }

  async function generate() {
    button.disabled = true;
    delete output.dataset.done;
    delete output.dataset.error;
    status.className = "";
    output.textContent = "";
    const precision = $("precision").value;
    const run = (window.studioRun = { ...window.studioRun, precision, firstTokenMs: null });
    try {
      const settings = S.checkSettings(formSettings());
      $("recipe").textContent = S.command(card.name, settings) + (precision === "fp32" ? "" : "  # the page ran int8");
      const loaded = await model(precision);
      status.textContent = "Generating...";
      const started = performance.now();
      let pieces = 0;
      const text = await S.generateText(loaded, settings, (piece) => {
        if (pieces++ === 1) run.firstTokenMs = performance.now(); // piece 0 is the prime
        output.append(piece);
      });
      const seconds = (performance.now() - started) / 1000;
      output.textContent = text; // one text node, exactly what the CLI prints
      run.characters = pieces - 2; // less the prime and the final newline
      run.seconds = seconds;
      run.charsPerSecond = run.characters / seconds;
      status.textContent = `${run.characters} characters in ${seconds.toFixed(2)} s (${run.charsPerSecond.toFixed(0)}/s, ${precision}, in this browser)`;
      output.dataset.done = "1";
    } catch (error) {
      fail(error);
    } finally {
      button.disabled = false;
    }
  }

  window.studioRun = { navigationStartMs: 0 };
  try {
    const query = new URLSearchParams(location.search);
    const given = S.settingsFromQuery(location.search);
    const response = await fetch("model/card.json");
    if (!response.ok) throw new Error(`model/card.json: HTTP ${response.status}`);
    card = await response.json();
    for (const precision of Object.keys(card.graphs)) $("precision").add(new Option(precision, precision));
    const wanted = query.get("precision") || "fp32";
    if (!(wanted in card.graphs)) throw new Error(`precision=${wanted}: this model has ${Object.keys(card.graphs).join(", ")}`);
    $("precision").value = wanted;
    for (const [key, id] of Object.entries(fields)) if (key in given) $(id).value = given[key];
    extra = {};
    for (const key of ["repetition_penalty", "no_repeat_ngram_size", "stop"]) if (key in given) extra[key] = given[key];
    status.textContent = "Ready.";
    $("settings").addEventListener("submit", (event) => {
      event.preventDefault();
      generate();
    });
    if (query.get("autorun") === "1") await generate();
  } catch (error) {
    fail(error);
  }
})();
