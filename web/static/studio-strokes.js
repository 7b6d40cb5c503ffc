/* Pen strokes in the browser: studio/handwriting/sample.py, studio/handwriting/mdn.py
 * (draw) and studio/handwriting/render.py (to_svg) written again, operation for
 * operation, over a mixture-density step graph on onnxruntime-web.  Uses the random
 * stream, sums and inverse CDF of studio-sampler.js, so a seed draws the same strokes and
 * the page shows the SVG `studio sample ... --out NAME.svg` writes (tests compare them).
 * float32 steps of numpy are rounded with Math.fround.  Stored styles are not supported
 * here (the server primes those).
 *
 * Loads as a plain <script> after studio-sampler.js (globalThis.StudioStrokes) or with
 * require() in node. */
(function (root, factory) {
  const sampler = typeof module === "object" && module.exports ? require("./studio-sampler.js") : root.StudioSampler;
  const api = factory(sampler);
  if (typeof module === "object" && module.exports) module.exports = api;
  else root.StudioStrokes = api;
})(typeof globalThis !== "undefined" ? globalThis : this, function (S) {
  "use strict";
  const f32 = Math.fround;
  const POINTS_PER_CHARACTER_LIMIT = 40;
  const TRAILING_MARK_POINTS = 2;
  const LINE_SPACING = 2.4;
  const CAPITAL_HEIGHT = 21.0;
  const DOODLE_POINTS = 45;
  const DOODLE_SPACING = 1.3;
  const DEFAULT_LINE_CHARACTERS = 16;
  const DOODLE_PIXELS = 110;
  const MARGIN = 12.0;
  const PIXELS_PER_UNIT = 2.0;
  const MAX_PIXELS = 2400;
  const HEAD = ["pen_logit", "mixture_logits", "means", "log_scales", "correlations"];

  // --- Python's spellings, for the SVG title and numbers -------------------------------------
  function pyRepr(text) {
    const quote = text.includes("'") && !text.includes('"') ? '"' : "'";
    let out = quote;
    for (const ch of text) {
      const code = ch.codePointAt(0);
      if (ch === "\\" || ch === quote) out += "\\" + ch;
      else if (ch === "\n") out += "\\n";
      else if (ch === "\r") out += "\\r";
      else if (ch === "\t") out += "\\t";
      else if (code < 0x20 || code === 0x7f) out += "\\x" + code.toString(16).padStart(2, "0");
      else out += ch;
    }
    return out + quote;
  }

  function pyFloat(x) {
    if (Number.isInteger(x) && Math.abs(x) < 1e16) return x.toFixed(1);
    return String(x).replace(/e([+-])(\d)$/, "e$10$2");
  }

  /** Python's f"{x:.1f}": the exact binary value rounded, ties to even.  toFixed rounds
   * the exact value too, but ties away from zero; a double lies exactly halfway between
   * two tenths only when it is an odd multiple of 1/4 (0.25, 0.75, 1.25, ...). */
  function fixed1(x) {
    if (Object.is(x, -0)) return "-0.0";
    const quarters = x * 4; // exact: a power of two
    if (Number.isInteger(quarters) && quarters % 2 !== 0) {
      const down = Math.floor(x * 10); // x * 10 is exact here: an odd multiple of 2.5
      const even = down % 2 === 0 ? down : down + 1;
      const text = (even / 10).toFixed(1);
      return x < 0 && even === 0 ? "-0.0" : text;
    }
    return x.toFixed(1);
  }

  // --- textwrap.wrap(width, break_long_words=True, break_on_hyphens=False) -------------------
  function wrapLines(text, width) {
    const lines = [];
    for (const raw of text.split(/\r\n|\r|\n/)) {
      const paragraph = raw.split(/\s+/).filter(Boolean).join(" ");
      if (!paragraph) continue;
      const chunks = paragraph.split(/( )/).filter((c) => c !== "").reverse();
      while (chunks.length) {
        const line = [];
        let length = 0;
        if (chunks[chunks.length - 1].trim() === "" && lines.length) chunks.pop();
        while (chunks.length) {
          const size = [...chunks[chunks.length - 1]].length;
          if (length + size <= width) {
            line.push(chunks.pop());
            length += size;
          } else break;
        }
        if (chunks.length && [...chunks[chunks.length - 1]].length > width) {
          const left = width < 1 ? 1 : width - length;
          const chunk = [...chunks[chunks.length - 1]];
          line.push(chunk.slice(0, left).join(""));
          chunks[chunks.length - 1] = chunk.slice(left).join("");
        }
        if (line.length && line[line.length - 1].trim() === "") {
          length -= line[line.length - 1].length;
          line.pop();
        }
        if (line.length) lines.push(line.join(""));
      }
    }
    return lines;
  }

  // --- the mixture (studio/handwriting/mdn.py) ------------------------------------------------
  function logSoftmax(values) {
    let top = -Infinity;
    for (const x of values) if (x > top) top = x;
    const shifted = Float64Array.from(values, (x) => x - top);
    const total = S.pairwiseSum(
      shifted.map((x) => Math.exp(x)),
      0,
      shifted.length,
    );
    const log = Math.log(total);
    return shifted.map((x) => x - log);
  }

  /** mdn.draw for one row: [dx, dy, pen] as float32 values. */
  function drawPoint(head, rng, bias) {
    const weight = f32(1.0 + bias);
    const mixtureLogits = Float64Array.from(head.mixture_logits, (x) => f32(x * weight));
    const weights = logSoftmax(mixtureLogits).map((x) => Math.exp(x));
    const component = S.inverseCdf(weights, rng.random());
    const biasF = f32(bias);
    const mean = [head.means[2 * component], head.means[2 * component + 1]];
    const scale = [0, 1].map((k) => Math.exp(f32(head.log_scales[2 * component + k] - biasF)));
    const rho = head.correlations[component];
    const [n0, n1] = rng.standardNormal(2);
    const dx = mean[0] + scale[0] * n0;
    const dy = mean[1] + scale[1] * (rho * n0 + Math.sqrt(Math.max(1 - rho * rho, 0.0)) * n1);
    const penProbability = 1.0 / (1.0 + Math.exp(-head.pen_logit[0]));
    const pen = rng.random() < penProbability ? 1.0 : 0.0;
    return [f32(dx), f32(dy), pen];
  }

  // --- the model ------------------------------------------------------------------------------
  class StrokesModel {
    constructor(ort, session, card) {
      if (card.head !== "mixture" || card.domain.name !== "strokes")
        throw new Error(`this page draws strokes; ${card.name} is a ${card.domain.name} model`);
      this.ort = ort;
      this.session = session;
      this.card = card;
      this.domain = card.domain;
      this.index = new Map([...card.domain.alphabet].map((ch, i) => [ch, i + 1]));
    }
    static async load(ort, graphUrl, card, options = {}) {
      const session = await ort.InferenceSession.create(graphUrl, { executionProviders: ["wasm"], ...options });
      return new StrokesModel(ort, session, card);
    }
    encodeText(text) {
      const characters = [...text];
      const missing = [...new Set(characters.filter((c) => !this.index.has(c)))].sort();
      if (missing.length) {
        throw new Error(
          `This model cannot write ${missing.map(pyRepr).join(", ")}; it knows: ${pyRepr(this.domain.alphabet)}.`,
        );
      }
      return characters.map((c) => this.index.get(c));
    }
    initState() {
      const state = {};
      for (const [name, spec] of Object.entries(this.card.io.state)) {
        const shape = spec.shape.map((d) => (d === "batch" ? 1 : d));
        state[name] = new this.ort.Tensor("float32", new Float32Array(shape.reduce((a, b) => a * b, 1)), shape);
      }
      return state;
    }
    async step(point, textIds, state) {
      const feeds = { ...state, points: new this.ort.Tensor("float32", Float32Array.from(point), [1, 3]) };
      if (textIds) {
        const ids = textIds.length ? textIds : [0];
        feeds.text = new this.ort.Tensor("int64", BigInt64Array.from(ids, BigInt), [1, ids.length]);
      }
      const outputs = await this.session.run(feeds);
      const next = {};
      for (const name of Object.keys(this.card.io.state)) next[name] = outputs[`${name}_out`];
      const head = {};
      for (const name of HEAD) head[name] = outputs[name].data;
      return [head, outputs.phi ? outputs.phi.data : null, next];
    }
    denormalise(points) {
      const [mx, my] = this.domain.mean.map(f32);
      const [sx, sy] = this.domain.std.map(f32);
      return points.map(([x, y, pen]) => [f32(f32(x * sx) + mx), f32(f32(y * sy) + my), pen]);
    }
  }

  function withoutTrailingMark(drawn) {
    const lifts = [];
    for (let i = 0; i < drawn.length - 1; i++) if (drawn[i][2] > 0.5) lifts.push(i);
    const start = lifts.length ? lifts[lifts.length - 1] + 1 : 0;
    if (start && drawn.length - start <= TRAILING_MARK_POINTS) return start;
    return drawn.length;
  }

  async function writeLine(model, line, settings, rng) {
    const ids = model.encodeText(line);
    const length = Math.max(1, ids.length);
    let state = model.initState();
    let point = [0, 0, 1];
    let drawn = [];
    const limit = POINTS_PER_CHARACTER_LIMIT * [...line].length + 20;
    for (let step = 0; step < limit; step++) {
      const [head, phi, next] = await model.step(point, ids, state);
      state = next;
      point = drawPoint(head, rng, settings.bias);
      let best = -Infinity;
      for (let i = 0; i < length; i++) if (phi[i] > best) best = phi[i];
      const finished = phi[length] > best;
      if (finished) point[2] = 1.0;
      drawn.push(point.slice());
      if (finished) {
        drawn = drawn.slice(0, withoutTrailingMark(drawn));
        break;
      }
    }
    return model.denormalise(drawn);
  }

  async function drawDoodle(model, settings, rng) {
    let state = model.initState();
    let point = [0, 0, 1];
    const drawn = [];
    for (let step = 0; step < 3 * DOODLE_POINTS; step++) {
      const [head, , next] = await model.step(point, null, state);
      state = next;
      point = drawPoint(head, rng, settings.bias);
      drawn.push(point.slice());
      if (step + 1 >= DOODLE_POINTS && point[2] > 0.5) break;
    }
    drawn[drawn.length - 1][2] = 1.0;
    return model.denormalise(drawn);
  }

  function absolute(offsets) {
    let x = 0;
    let y = 0;
    return offsets.map(([dx, dy, pen]) => [(x += dx), (y += dy), pen]);
  }

  /** studio.handwriting.sample.generate without styles: {page, title, scale, points}. */
  async function generateStrokes(model, settings) {
    if (settings.style !== null && settings.style !== undefined)
      throw new Error("stored styles are primed on the server: choose style none or turn off Run in my browser");
    const rng = new S.CounterRNG(settings.seed, 0);
    const page = [];
    let total = 0;
    if (model.domain.conditional) {
      const text = settings.text !== null && settings.text !== undefined ? settings.text : "Hello world";
      model.encodeText(text.replace(/\n/g, " "));
      const lines = wrapLines(text, model.domain.line_characters || DEFAULT_LINE_CHARACTERS);
      if (!lines.length) throw new Error("Give some text to write (it is empty).");
      const lineHeight = LINE_SPACING * CAPITAL_HEIGHT;
      for (let sample = 0; sample < (settings.num || 1); sample++) {
        for (let index = 0; index < lines.length; index++) {
          const offsets = await writeLine(model, lines[index], settings, rng);
          const points = absolute(offsets);
          const low = points.length ? Math.min(...points.map((p) => p[0])) : 0.0;
          const shift = lineHeight * (index + sample * (lines.length + 1));
          page.push(points.map(([x, y, pen]) => [x - low, y - shift, pen]));
          total += offsets.length;
        }
      }
      const title = `handwriting ${pyRepr(text)}: ${lines.length} line(s), ${total} points, bias ${pyFloat(settings.bias)}`;
      return { page, title, scale: PIXELS_PER_UNIT, points: total };
    }
    const doodles = [];
    for (let i = 0; i < (settings.num || 1); i++) doodles.push(absolute(await drawDoodle(model, settings, rng)));
    const ptp = (values) => Math.max(...values) - Math.min(...values);
    const widest = Math.max(
      ...doodles.map((d) =>
        Math.max(
          ptp(d.map((p) => p[0])),
          ptp(d.map((p) => p[1])),
        ),
      ),
    );
    doodles.forEach((doodle, index) => {
      const lowX = Math.min(...doodle.map((p) => p[0]));
      const lowY = Math.min(...doodle.map((p) => p[1]));
      page.push(doodle.map(([x, y, pen]) => [x - lowX + index * DOODLE_SPACING * widest, y - lowY, pen]));
      total += doodle.length;
    });
    const title = `${settings.num || 1} doodle(s), ${total} points, bias ${pyFloat(settings.bias)}`;
    return { page, title, scale: DOODLE_PIXELS / Math.max(widest, 1e-6), points: total };
  }

  // --- studio/handwriting/render.py: to_svg ----------------------------------------------------
  function penRuns(points) {
    const runs = [];
    let start = 0;
    const ends = [];
    points.forEach((p, i) => {
      if (p[2] > 0.5) ends.push(i);
    });
    ends.push(points.length - 1);
    for (const index of ends) {
      if (index >= start) {
        runs.push(points.slice(start, index + 1));
        start = index + 1;
      }
    }
    return runs.filter((r) => r.length);
  }

  // render.catmull_rom: a run densified along its spline (what the picture's bounds cover)
  function catmullRom(run, samples = 6) {
    if (run.length < 3) return run;
    const padded = [run[0], ...run, run[run.length - 1]];
    const step = 1 / samples;
    const ts = Array.from({ length: samples }, (_, i) => i * step);
    const out = [];
    for (let i = 1; i < padded.length - 2; i++) {
      const [p0, p1, p2, p3] = [padded[i - 1], padded[i], padded[i + 1], padded[i + 2]];
      for (const t of ts) {
        const t2 = t * t;
        const t3 = t ** 3;
        out.push(
          [0, 1].map(
            (k) =>
              0.5 *
              (2 * p1[k] +
                (-p0[k] + p2[k]) * t +
                (2 * p0[k] - 5 * p1[k] + 4 * p2[k] - p3[k]) * t2 +
                (-p0[k] + 3 * p1[k] - 3 * p2[k] + p3[k]) * t3),
          ),
        );
      }
    }
    out.push(run[run.length - 1]);
    return out;
  }

  function toSvg(page, strokeWidth, hexColor, title, scaleWanted = PIXELS_PER_UNIT) {
    // render.Layout.fit with page_width 0: the splines' swing and half the pen included
    const all = page.flatMap((points) => penRuns(points).flatMap((run) => catmullRom(run.map((p) => [p[0], p[1]]))));
    const points = all.length ? all : [[0, 0]];
    const low = [Infinity, Infinity];
    const high = [-Infinity, -Infinity];
    for (const [x, y] of points) {  // a loop: spreading tens of thousands of points overflows the stack
      low[0] = Math.min(low[0], x);
      low[1] = Math.min(low[1], y);
      high[0] = Math.max(high[0], x);
      high[1] = Math.max(high[1], y);
    }
    const extent = [Math.max(high[0] - low[0], 1.0), Math.max(high[1] - low[1], 1.0)];
    const margin = MARGIN + strokeWidth / 2;
    const scale = Math.min(scaleWanted, (MAX_PIXELS - 2 * margin) / Math.max(extent[0], extent[1]));
    const width = Math.ceil(extent[0] * scale + 2 * margin);
    const height = Math.ceil(extent[1] * scale + 2 * margin);
    const pixel = ([x, y]) => [(x - low[0]) * scale + margin, (high[1] - y) * scale + margin];
    const paths = [];
    for (const stroke of page) {
      for (const run of penRuns(stroke)) {
        const xy = run.map(pixel);
        if (xy.length === 1) {
          paths.push(`M${fixed1(xy[0][0])},${fixed1(xy[0][1])} l0.01,0`);
          continue;
        }
        const padded = [xy[0], ...xy, xy[xy.length - 1]];
        const commands = [`M${fixed1(xy[0][0])},${fixed1(xy[0][1])}`];
        for (let i = 1; i < padded.length - 2; i++) {
          const [p0, p1, p2, p3] = [padded[i - 1], padded[i], padded[i + 1], padded[i + 2]];
          const c1 = [0, 1].map((k) => p1[k] + (p2[k] - p0[k]) / 6);
          const c2 = [0, 1].map((k) => p2[k] - (p3[k] - p1[k]) / 6);
          commands.push(
            `C${fixed1(c1[0])},${fixed1(c1[1])} ${fixed1(c2[0])},${fixed1(c2[1])} ${fixed1(p2[0])},${fixed1(p2[1])}`,
          );
        }
        paths.push(commands.join(" "));
      }
    }
    const body = paths.map((d) => `  <path d="${d}"/>`).join("\n");
    const escaped = title.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
    return (
      `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" ` +
      `viewBox="0 0 ${width} ${height}">\n  <title>${escaped}</title>\n` +
      `  <rect width="100%" height="100%" fill="white"/>\n` +
      `  <g fill="none" stroke="${hexColor}" stroke-width="${pyFloat(strokeWidth)}" stroke-linecap="round" ` +
      `stroke-linejoin="round">\n${body}\n  </g>\n</svg>\n`
    );
  }

  return { pyRepr, pyFloat, fixed1, wrapLines, logSoftmax, drawPoint, StrokesModel, generateStrokes, toSvg, penRuns };
});
