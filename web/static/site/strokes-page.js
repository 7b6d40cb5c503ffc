/* The exported page of a strokes model: settings from the form or the URL (text, bias,
 * seed, width, color), the drawing shown in #output.  With autorun=1 it draws at once and
 * sets data-done="1" on #output when finished (data-error="1" and the message in #status
 * on failure); window.studioRun.svg holds the SVG's exact text. */
(async function () {
  "use strict";
  const S = globalThis.StudioSampler;
  const K = globalThis.StudioStrokes;
  const $ = (id) => document.getElementById(id);
  const output = $("output");
  const status = $("status");
  const button = $("generate");
  let card;
  let model;

  ort.env.wasm.numThreads = 1;
  ort.env.wasm.proxy = false;
  ort.env.wasm.wasmPaths = new URL("onnxruntime-web/", document.baseURI).href;

  function fail(error) {
    status.textContent = "error: " + (error && error.message ? error.message : String(error));
    status.className = "error";
    output.dataset.error = "1";
    button.disabled = false;
  }

  function number(id, name, check, rule) {
    const text = $(id).value.trim();
    const value = Number(text);
    if (text === "" || Number.isNaN(value) || !check(value)) throw new Error(`${name} must be ${rule} (got ${text})`);
    return value;
  }

  function settings() {
    const color = $("color").value.trim().toLowerCase();
    if (!/^#[0-9a-f]{6}$/.test(color)) throw new Error(`color must be a hex colour like #1a1a2e (got ${color})`);
    return {
      text: card.domain.conditional ? $("text").value : null,
      bias: number("bias", "bias", (v) => v >= 0 && v <= 100, "0 to 100"),
      seed: number("seed", "seed", (v) => Number.isSafeInteger(v) && v >= 0, "a whole number, 0 or more"),
      width: number("width", "stroke width", (v) => v > 0 && v <= 100, "above 0 and at most 100 pixels"),
      color,
      num: 1,
    };
  }

  function recipe(s) {
    const quote = (text) => (/^[\w@%+=:,./-]+$/.test(text) ? text : `'${text.replace(/'/g, "'\"'\"'")}'`);
    const parts = ["studio sample", `--model ${quote(card.name)}`, `--seed ${s.seed}`, "--precision fp32"];
    if (s.text !== null) parts.push(`--text ${quote(s.text)}`);
    // this page writes each model line in its own hand, one line a page line
    if (s.text !== null) parts.push("--page-width 0 --hand-per-line");
    if (s.bias !== 1.0) parts.push(`--bias ${s.bias}`);
    if (s.width !== 2.0) parts.push(`--stroke-width ${s.width}`);
    if (s.color !== "#1a1a2e") parts.push(`--color '${s.color}'`);
    parts.push(`--out ${quote(card.name)}-seed${s.seed}.svg`);
    return parts.join(" ");
  }

  async function generate() {
    button.disabled = true;
    delete output.dataset.done;
    delete output.dataset.error;
    status.className = "";
    output.textContent = "";
    const run = (window.studioRun = { ...window.studioRun, firstPointMs: null });
    try {
      const s = settings();
      $("recipe").textContent = recipe(s);
      if (!model) {
        status.textContent = "Loading the graph...";
        const started = performance.now();
        model = await K.StrokesModel.load(ort, "model/" + card.graphs.fp32, card);
        run.loadMs = performance.now() - started;
      }
      status.textContent = "Drawing...";
      const started = performance.now();
      const drawing = await K.generateStrokes(model, s);
      const svg = K.toSvg(drawing.page, s.width, s.color, drawing.title, drawing.scale);
      run.seconds = (performance.now() - started) / 1000;
      run.points = drawing.points;
      run.svg = svg;
      output.innerHTML = svg;
      const link = $("download");
      link.href = URL.createObjectURL(new Blob([svg], { type: "image/svg+xml" }));
      link.download = `${card.name}-seed${s.seed}.svg`;
      link.hidden = false;
      status.textContent = `${drawing.title}: drawn in ${run.seconds.toFixed(2)} s in this browser`;
      output.dataset.done = "1";
    } catch (error) {
      fail(error);
    } finally {
      button.disabled = false;
    }
  }

  window.studioRun = {};
  try {
    const query = new URLSearchParams(location.search);
    const response = await fetch("model/card.json");
    if (!response.ok) throw new Error(`model/card.json: HTTP ${response.status}`);
    card = await response.json();
    if (!card.domain.conditional) $("text-label").hidden = true;
    for (const [name, id] of [["text", "text"], ["bias", "bias"], ["seed", "seed"], ["width", "width"], ["color", "color"]])
      if (query.has(name)) $(id).value = query.get(name);
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
