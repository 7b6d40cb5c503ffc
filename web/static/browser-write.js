/* "Run in my browser" on the Write and Handwrite tabs: sample with onnxruntime-web and
 * studio-sampler.js (text, streamed into the tab's text box) or studio-strokes.js (an
 * SVG).  web/browser.py hands over the card and fp32 graph (Gradio file data) and a
 * plan: the checked settings and the recipe. */
(function () {
  "use strict";
  const S = globalThis.StudioSampler;
  const models = new Map(); // graph URL -> TextModel: each bundle is loaded once per page

  function absolute(url) {
    return new URL(url, document.baseURI).href;
  }

  async function model(files, plan) {
    const card = files.find((file) => (file.orig_name || file.path).endsWith("card.json"));
    const graph = files.find((file) => (file.orig_name || file.path).endsWith(".onnx"));
    if (!card || !graph) throw new Error("the server sent no card and graph");
    if (!models.has(graph.url)) {
      ort.env.wasm.numThreads = 1;
      ort.env.wasm.proxy = false;
      ort.env.wasm.wasmPaths = { mjs: absolute(plan.runtime.mjs), wasm: absolute(plan.runtime.wasm) };
      const response = await fetch(card.url);
      if (!response.ok) throw new Error(`card: HTTP ${response.status}`);
      const kind = plan.kind === "strokes" ? globalThis.StudioStrokes.StrokesModel : S.TextModel;
      models.set(graph.url, kind.load(ort, graph.url, await response.json()));
    }
    try {
      return await models.get(graph.url);
    } catch (error) {
      models.delete(graph.url); // a failed load is tried again next time
      throw error;
    }
  }

  async function draw(files, plan) {
    const started = performance.now();
    const loaded = await model(files, plan);
    const drawing = await globalThis.StudioStrokes.generateStrokes(loaded, plan.settings);
    const svg = globalThis.StudioStrokes.toSvg(drawing.page, plan.stroke_width, plan.color, drawing.title, drawing.scale);
    const seconds = (performance.now() - started) / 1000;
    window.studioBrowserRun = { points: drawing.points, seconds, svg };
    const summary = `${drawing.title} (drawn in your browser in ${seconds.toFixed(2)} s)`;
    return [summary, plan.recipe, svg, null, null, null]; // no PNG, GIF or files from the server
  }

  async function run(files, plan) {
    if (plan.kind === "strokes") return draw(files, plan);
    const box = document.querySelector("#write-text textarea");
    const started = performance.now();
    const loaded = await model(files, plan);
    const sampling = performance.now();
    let text = "";
    let count = -1; // the first piece is the prime
    let stop = false;
    const stopButton = document.getElementById("write-stop");
    const press = () => (stop = true);
    if (stopButton) stopButton.addEventListener("click", press);
    try {
      await S.generateText(
        loaded,
        plan.settings,
        (piece) => {
          text += piece;
          count += 1;
          if (box) box.value = text;
        },
        () => stop,
      );
    } finally {
      if (stopButton) stopButton.removeEventListener("click", press);
    }
    const seconds = (performance.now() - sampling) / 1000;
    const loadSeconds = (sampling - started) / 1000;
    count -= 1; // the final newline
    const stats =
      `${count} characters in ${seconds.toFixed(2)} s in your browser ` +
      `(${(count / seconds).toFixed(0)}/s, fp32, onnxruntime-web)` +
      (loadSeconds > 0.05 ? `; model loaded in ${loadSeconds.toFixed(2)} s` : "");
    window.studioBrowserRun = { characters: count, seconds, loadSeconds };
    let recipe = plan.recipe;
    if (stop) {
      // what exists is what --length N writes, as on the server
      recipe = / --length \d+/.test(recipe) ? recipe.replace(/ --length \d+/, ` --length ${count}`) : `${recipe} --length ${count}`;
    }
    return [text.slice(0, -1), recipe, (stop ? "stopped: " : "") + stats];
  }

  globalThis.StudioBrowserWrite = { run };
})();
