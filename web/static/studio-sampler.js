/* Sequence Studio's sampler in JavaScript: the same random stream, rules and draw as
 * studio/sampling/rng.py, studio/sampling/rules.py and studio/numeric.py, so a page
 * running a bundle's step graph on onnxruntime-web prints what `studio sample` prints.
 *
 * Every step mirrors the numpy code operation for operation, in float64 and in the same
 * order (sums included: numpy's pairwise summation is reproduced in pairwiseSum), so
 * the arithmetic is identical; only Math.exp may round differently from the C library
 * in the last bit, which can change a draw only when a uniform falls within ~1e-16 of a
 * boundary.  tests/test_browser_sampling.py runs both on the same logits.
 *
 * Loads as a plain <script> (globalThis.StudioSampler) or with require() in node.
 */
(function (root, factory) {
  const api = factory();
  if (typeof module === "object" && module.exports) module.exports = api;
  else root.StudioSampler = api;
})(typeof globalThis !== "undefined" ? globalThis : this, function () {
  "use strict";

  // --- the random stream: SplitMix64 keyed by (seed, stream); see studio/sampling/rng.py
  const MASK = (1n << 64n) - 1n;
  const GOLDEN = 0x9e3779b97f4a7c15n;
  const MULTIPLIER_1 = 0xbf58476d1ce4e5b9n;
  const MULTIPLIER_2 = 0x94d049bb133111ebn;
  const UNIT = 2 ** -53;

  function mix64(value) {
    let z = value & MASK;
    z = ((z ^ (z >> 30n)) * MULTIPLIER_1) & MASK;
    z = ((z ^ (z >> 27n)) * MULTIPLIER_2) & MASK;
    return z ^ (z >> 31n);
  }

  class CounterRNG {
    constructor(seed, stream = 0) {
      const s = BigInt(seed);
      const r = BigInt(stream);
      if (s < 0n || r < 0n) throw new Error("seed and stream must be 0 or more");
      this.key = mix64(mix64(s) ^ (r & MASK));
      this.counter = 0n;
    }
    word() {
      this.counter += 1n;
      return mix64(this.key + this.counter * GOLDEN);
    }
    random() {
      return Number(this.word() >> 11n) * UNIT;
    }
    /** n standard Gumbels, as CounterRNG.gumbel in Python: -log(-log(u)) with
     * u = ((word >> 11) + 0.5) * 2**-53, strictly inside (0, 1). */
    gumbel(n) {
      const out = new Float64Array(n);
      for (let i = 0; i < n; i++) out[i] = -Math.log(-Math.log((Number(this.word() >> 11n) + 0.5) * UNIT));
      return out;
    }
    /** n standard normals by Box-Muller, as CounterRNG.standard_normal in Python. */
    standardNormal(n) {
      const out = [];
      while (out.length < n) {
        const u1 = this.random();
        const u2 = this.random();
        const radius = Math.sqrt(-2.0 * Math.log1p(-u1));
        const angle = 2.0 * Math.PI * u2;
        out.push(radius * Math.cos(angle), radius * Math.sin(angle));
      }
      return out.slice(0, n);
    }
  }

  // --- numpy's float64 sum: pairwise, 8 accumulators per block of up to 128 -------------
  function pairwiseSum(values, start, count) {
    if (count < 8) {
      let total = 0.0;
      for (let i = 0; i < count; i++) total += values[start + i];
      return total;
    }
    if (count <= 128) {
      const r = new Float64Array(8);
      for (let j = 0; j < 8; j++) r[j] = values[start + j];
      let i = 8;
      for (; i < count - (count % 8); i += 8) for (let j = 0; j < 8; j++) r[j] += values[start + i + j];
      let total = r[0] + r[1] + (r[2] + r[3]) + (r[4] + r[5] + (r[6] + r[7]));
      for (; i < count; i++) total += values[start + i];
      return total;
    }
    let half = Math.floor(count / 2);
    half -= half % 8;
    return pairwiseSum(values, start, half) + pairwiseSum(values, start + half, count - half);
  }

  // --- the rules, one row at a time: (history: int[], logits: Float64Array) -> new array --
  /** Token ids by descending logit, ties to the lower id (numpy's stable argsort of -x). */
  function descending(logits) {
    const order = Array.from(logits, (_, i) => i);
    order.sort((a, b) => (logits[a] > logits[b] ? -1 : logits[a] < logits[b] ? 1 : a - b));
    return order;
  }

  function repetitionPenalty(penalty) {
    if (!(penalty > 0)) throw new Error(`repetition penalty must be positive (got ${penalty})`);
    return (history, logits) => {
      const out = Float64Array.from(logits);
      for (const token of new Set(history)) {
        const value = out[token];
        out[token] = value > 0 ? value / penalty : value * penalty;
      }
      return out;
    };
  }

  function noRepeatNGram(size) {
    if (!(size >= 1)) throw new Error(`no-repeat n-gram size must be at least 1 (got ${size})`);
    return (history, logits) => {
      const out = Float64Array.from(logits);
      const n = size;
      if (history.length < n - 1) return out;
      const prefix = history.slice(history.length - (n - 1));
      for (let i = 0; i + n <= history.length; i++) {
        let same = true;
        for (let j = 0; j < n - 1 && same; j++) same = history[i + j] === prefix[j];
        if (same) out[history[i + n - 1]] = -Infinity;
      }
      return out;
    };
  }

  function temperature(value) {
    if (!(value > 0)) throw new Error(`temperature must be positive (got ${value})`);
    return (history, logits) => logits.map((x) => x / value);
  }

  function topK(k) {
    if (!(k >= 1)) throw new Error(`top-k must be at least 1 (got ${k})`);
    return (history, logits) => {
      if (k >= logits.length) return Float64Array.from(logits);
      const out = new Float64Array(logits.length).fill(-Infinity);
      for (const token of descending(logits).slice(0, k)) out[token] = logits[token];
      return out;
    };
  }

  function topP(p) {
    if (!(p > 0 && p <= 1)) throw new Error(`top-p must be in (0, 1] (got ${p})`);
    return (history, logits) => {
      if (p >= 1) return Float64Array.from(logits);
      const order = descending(logits);
      const first = logits[order[0]];
      const probs = Float64Array.from(order, (token) => Math.exp(logits[token] - first));
      const total = pairwiseSum(probs, 0, probs.length);
      for (let i = 0; i < probs.length; i++) probs[i] /= total;
      const out = new Float64Array(logits.length).fill(-Infinity);
      let cumulative = 0.0;
      for (let i = 0; i < probs.length; i++) {
        cumulative += probs[i];
        if (cumulative - probs[i] < p) out[order[i]] = logits[order[i]]; // the first is always kept
      }
      return out;
    };
  }

  /** No rule but a temperature (studio.sampling.rules.draws_by_gumbel, with a vocabulary of
   * at most GUMBEL_MAX_VOCAB): the row draws by gumbelMax, as TokenRows' plain rows do. */
  const GUMBEL_MAX_VOCAB = 256;
  function isPlain(settings) {
    return (
      settings.repetition_penalty === 1.0 && !settings.no_repeat_ngram_size && !settings.top_k && !(settings.top_p < 1.0)
    );
  }

  /** The rule chain in studio.sampling.rules.build_rules' order (text domains: no mask). */
  function buildRules(settings) {
    const rules = [];
    if (settings.repetition_penalty !== 1.0) rules.push(repetitionPenalty(settings.repetition_penalty));
    if (settings.no_repeat_ngram_size) rules.push(noRepeatNGram(settings.no_repeat_ngram_size));
    if (!isGreedy(settings)) {
      if (settings.temperature !== 1.0) rules.push(temperature(settings.temperature));
      if (settings.top_k) rules.push(topK(settings.top_k));
      if (settings.top_p < 1.0) rules.push(topP(settings.top_p));
    }
    return rules;
  }

  function applyRules(rules, history, logits) {
    for (const rule of rules) logits = rule(history, logits);
    return logits;
  }

  function isGreedy(settings) {
    return Boolean(settings.greedy) || settings.temperature === 0;
  }

  function argmax(values) {
    let best = 0;
    for (let i = 1; i < values.length; i++) if (values[i] > values[best]) best = i;
    return best;
  }

  /** studio.numeric.inverse_cdf for one row: the first index whose cumulative weight
   * exceeds uniform * total; a zero-weight pick moves to the nearest allowed index. */
  function inverseCdf(weights, uniform) {
    const cumulative = new Float64Array(weights.length);
    let running = 0.0;
    for (let i = 0; i < weights.length; i++) cumulative[i] = running += weights[i];
    const target = uniform * cumulative[weights.length - 1];
    let index = 0;
    while (index < cumulative.length && cumulative[index] <= target) index++;
    index = Math.min(index, weights.length - 1);
    if (weights[index]) return index;
    let best = -1;
    for (let i = 0; i < weights.length; i++) {
      if (weights[i] > 0 && (best < 0 || Math.abs(i - index) < Math.abs(best - index))) best = i;
    }
    return best;
  }

  /** studio.sampling.rules.draw for one row: softmax weights, one uniform, inverse CDF. */
  function draw(logits, rng) {
    let top = -Infinity;
    for (const x of logits) if (x > top) top = x;
    if (!Number.isFinite(top)) {
      throw new Error(
        "the sampling rules ban every token (e.g. --no-repeat-ngram too small for --length, " +
          "or --top-p/--top-k with an all-masked row): relax them",
      );
    }
    return inverseCdf(
      logits.map((x) => Math.exp(x - top)),
      rng.random(),
    );
  }

  /** studio.sampling.rules.gumbel_max for a row without rules but a temperature T: per
   * token, vocab Gumbels from the stream (as GumbelNoise), times T in float64 and rounded
   * to float32, added to the logits in float32 (a sum of two floats computed in float64
   * and rounded once to float32 is the float32 sum), then the first maximum: the largest
   * logits / T + g. */
  function gumbelMax(logits, rng, temperature = 1.0) {
    let top = -Infinity;
    for (const x of logits) if (x > top) top = x;
    if (!Number.isFinite(top)) throw new Error("the model gave no finite logit (nan or inf): its file is damaged; re-export it");
    const noise = rng.gumbel(logits.length);
    let best = 0;
    let bestValue = -Infinity;
    for (let i = 0; i < logits.length; i++) {
      const value = Math.fround(Math.fround(logits[i]) + Math.fround(noise[i] * temperature));
      if (value > bestValue) {
        best = i;
        bestValue = value;
      }
    }
    return best;
  }

  // --- text by characters (studio/domains/chars.py) ---------------------------------------
  const SEPARATOR = "\x1e";

  class CharsDomain {
    constructor(config) {
      if (config.name !== "chars") throw new Error(`the browser samples text models by characters, not ${config.name}`);
      this.symbols = config.symbols;
      this.index = new Map(this.symbols.map((symbol, i) => [symbol, i]));
      this.separatorId = this.index.get(SEPARATOR);
    }
    encode(text) {
      const characters = Array.from(text);
      const missing = [...new Set(characters.filter((ch) => !this.index.has(ch)))].sort();
      if (missing.length) {
        const shown = missing.slice(0, 10).map((ch) => JSON.stringify(ch)).join(", ");
        throw new Error(
          `${missing.length} character(s) not in the model's vocabulary: ${shown}; remove them or train on a corpus that has them`,
        );
      }
      return characters.map((ch) => this.index.get(ch));
    }
    decode(ids) {
      return ids.map((id) => this.symbols[id]).join("");
    }
    tokenText(id) {
      return this.symbols[id];
    }
    /** [prime ids, how many lead in unseen]: TextDomainMixin._primed. */
    primed(prime) {
      const newline = this.index.has("\n") ? this.index.get("\n") : null;
      if (!prime) {
        const start = newline !== null ? [newline, newline, this.separatorId] : [this.separatorId];
        return [start, start.length];
      }
      const ids = this.encode(prime);
      if (newline !== null && ids[0] !== newline) return [[newline, ...ids], 1];
      return [ids, 0];
    }
  }

  // --- settings as studio.sampling.settings.SampleSettings checks them ---------------------
  const DEFAULTS = {
    prime: "",
    temperature: 1.0,
    seed: 0,
    length: 500,
    top_k: 0,
    top_p: 1.0,
    repetition_penalty: 1.0,
    no_repeat_ngram_size: 0,
    greedy: false,
    stop: [],
  };

  function checkSettings(given) {
    const s = { ...DEFAULTS, ...given };
    const fail = (message) => {
      throw new Error(message);
    };
    if (!(s.temperature >= 0 && s.temperature <= 100)) fail(`temperature must be 0 (greedy) to 100 (got ${s.temperature})`);
    if (!(Number.isInteger(s.top_k) && s.top_k >= 0)) fail(`top-k must be 0 (off) or more (got ${s.top_k})`);
    if (!(s.top_p > 0 && s.top_p <= 1)) fail(`top-p must be in (0, 1] (got ${s.top_p})`);
    if (!(s.repetition_penalty > 0 && s.repetition_penalty <= 100))
      fail(`repetition penalty must be above 0 and at most 100; 1.0 is off (got ${s.repetition_penalty})`);
    if (!(Number.isInteger(s.no_repeat_ngram_size) && s.no_repeat_ngram_size >= 0))
      fail(`no-repeat-ngram size must be 0 (off) or more (got ${s.no_repeat_ngram_size})`);
    if (!(Number.isInteger(s.length) && s.length >= 1)) fail(`length must be at least 1 (got ${s.length})`);
    if (!(Number.isSafeInteger(s.seed) && s.seed >= 0)) fail(`seed must be a whole number, 0 or more (got ${s.seed})`);
    if (s.stop.some((x) => !x)) fail("stop strings must not be empty");
    return s;
  }

  /** Settings from URL query parameters (the names the exported page documents). */
  function settingsFromQuery(search) {
    const query = new URLSearchParams(search);
    const given = {};
    const number = (name, key, parse) => {
      if (!query.has(name)) return;
      const text = query.get(name).trim();
      const value = parse(text);
      if (text === "" || Number.isNaN(value)) throw new Error(`${name}=${query.get(name)} is not a number`);
      given[key] = value;
    };
    if (query.has("prime")) given.prime = query.get("prime");
    number("temp", "temperature", Number);
    number("seed", "seed", Number);
    number("length", "length", Number);
    number("top_k", "top_k", Number);
    number("top_p", "top_p", Number);
    number("repetition_penalty", "repetition_penalty", Number);
    number("no_repeat_ngram", "no_repeat_ngram_size", Number);
    if (query.has("stop")) given.stop = query.getAll("stop");
    return given;
  }

  /** The `studio sample` command for these settings (the recipe shown beside a sample). */
  function command(modelName, s) {
    const quote = (text) => (/^[\w@%+=:,./-]+$/.test(text) ? text : `'${text.replace(/'/g, "'\"'\"'")}'`);
    const parts = ["studio sample", `--model ${quote(modelName)}`];
    if (s.prime) parts.push(`--prime ${quote(s.prime)}`);
    if (s.temperature !== 1.0) parts.push(`--temp ${s.temperature}`);
    if (s.top_k) parts.push(`--top-k ${s.top_k}`);
    if (s.top_p !== 1.0) parts.push(`--top-p ${s.top_p}`);
    if (s.repetition_penalty !== 1.0) parts.push(`--repetition-penalty ${s.repetition_penalty}`);
    if (s.no_repeat_ngram_size) parts.push(`--no-repeat-ngram ${s.no_repeat_ngram_size}`);
    for (const stop of s.stop) parts.push(`--stop ${quote(stop)}`);
    parts.push(`--length ${s.length}`, `--seed ${s.seed}`, "--precision fp32");
    return parts.join(" ");
  }

  // --- the step graph on onnxruntime-web ----------------------------------------------------
  /** A categorical bundle's session with its card's named state (studio/runtime.py). */
  class TextModel {
    constructor(ort, session, card) {
      if (card.head !== "categorical") throw new Error(`the browser samples text models; this one has a ${card.head} head`);
      this.ort = ort;
      this.session = session;
      this.card = card;
      this.domain = new CharsDomain(card.domain);
      this.stateSpec = card.io.state;
      // a one-step graph (static int8: time axis 1) is primed token by token, as
      // studio/runtime.py does after reading the session's own input shape
      const metadata = session.inputMetadata || [];
      const tokensMeta = Array.isArray(metadata) ? metadata.find((m) => m && m.name === "tokens") : metadata.tokens;
      const graphTime = tokensMeta && Array.isArray(tokensMeta.shape) ? tokensMeta.shape[1] : undefined;
      this.stepsOneAtATime = card.io.inputs.tokens.shape[1] === 1 || graphTime === 1;
    }
    static async load(ort, graphUrl, card, options = {}) {
      const session = await ort.InferenceSession.create(graphUrl, {
        executionProviders: ["wasm"],
        graphOptimizationLevel: "all",
        ...options,
      });
      return new TextModel(ort, session, card);
    }
    initState() {
      const state = {};
      for (const [name, spec] of Object.entries(this.stateSpec)) {
        const shape = spec.shape.map((d) => (d === "batch" ? 1 : d));
        state[name] = new this.ort.Tensor("float32", new Float32Array(shape.reduce((a, b) => a * b, 1)), shape);
      }
      return state;
    }
    /** tokens (1, T) -> [last position's logits as Float64Array, next state]. */
    async logits(tokens, state) {
      if (this.stepsOneAtATime && tokens.length > 1) {
        let last;
        for (const token of tokens) [last, state] = await this.logits([token], state);
        return [last, state];
      }
      const feeds = { ...state };
      feeds.tokens = new this.ort.Tensor("int64", BigInt64Array.from(tokens, BigInt), [1, tokens.length]);
      const outputs = await this.session.run(feeds);
      const next = {};
      for (const name of Object.keys(this.stateSpec)) next[name] = outputs[`${name}_out`];
      const logits = outputs.logits;
      const vocab = logits.dims[2];
      const data = logits.data;
      return [Float64Array.from(data.subarray(data.length - vocab)), next];
    }
  }

  /**
   * Sample one text as studio.generate.Generation._sample does for one row.  Calls
   * onText(piece) with the shown prime first, then each token's text; returns the whole
   * text exactly as `studio sample` prints it (prime included, final newline included).
   * ``stopped()`` true ends it early, before the next token.
   */
  async function generateText(model, given, onText = () => {}, stopped = () => false) {
    const s = checkSettings(given);
    const domain = model.domain;
    const [prime, hidden] = domain.primed(s.prime);
    const rng = new CounterRNG(s.seed, 0);
    const greedy = isGreedy(s);
    const history = prime.slice();
    const longestStop = Math.max(0, ...s.stop.map((x) => x.length));
    let text = domain.decode(prime.slice(hidden));
    onText(text);
    let [last, state] = await model.logits(prime, model.initState());
    const plain = !greedy && isPlain(s) && last.length <= GUMBEL_MAX_VOCAB; // the logits' width, as the runtime's
    const rules = plain ? [] : buildRules(s);
    const generated = [];
    let tail = "";
    for (let step = 0; step < s.length; step++) {
      if (stopped()) break; // the tokens so far are what --length <their count> writes
      const shaped = rules.length ? applyRules(rules, history, last) : last;
      const token = greedy ? argmax(shaped) : plain ? gumbelMax(last, rng, s.temperature) : draw(shaped, rng);
      generated.push(token);
      if (token !== domain.separatorId) {
        const piece = domain.tokenText(token);
        text += piece;
        onText(piece);
      }
      if (token === domain.separatorId) break;
      if (s.stop.length) {
        tail = (tail + domain.tokenText(token)).slice(-2 * (longestStop + 64));
        if (s.stop.some((stop) => tail.includes(stop))) break;
      }
      history.push(token);
      [last, state] = await model.logits([token], state);
    }
    onText("\n");
    return text + "\n";
  }

  return {
    CounterRNG,
    mix64,
    pairwiseSum,
    descending,
    repetitionPenalty,
    noRepeatNGram,
    temperature,
    topK,
    topP,
    buildRules,
    applyRules,
    inverseCdf,
    draw,
    gumbelMax,
    isPlain,
    argmax,
    isGreedy,
    CharsDomain,
    checkSettings,
    settingsFromQuery,
    command,
    TextModel,
    generateText,
  };
});
