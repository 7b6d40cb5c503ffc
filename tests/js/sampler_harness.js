// Runs web/static/studio-sampler.js on cases read from stdin (JSON) and prints the
// results as JSON, float64 arrays as base64 of their little-endian bytes so every bit
// survives.  Driven by tests/test_browser_sampling.py.
"use strict";
const path = require("path");
const sampler = require(path.join(__dirname, "..", "..", "web", "static", "studio-sampler.js"));
const strokes = require(path.join(__dirname, "..", "..", "web", "static", "studio-strokes.js"));

const toBytes = (values) => Buffer.from(Float64Array.from(values).buffer).toString("base64");
const fromBytes = (text) => {
  const bytes = Buffer.from(text, "base64");
  return new Float64Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length));
};

function run(job) {
  if (job.kind === "stream") {
    const rng = new sampler.CounterRNG(job.seed, job.stream);
    const words = [];
    for (let i = 0; i < job.words; i++) words.push(rng.word().toString());
    const uniforms = [];
    for (let i = 0; i < job.uniforms; i++) uniforms.push(rng.random());
    return { words, uniforms: toBytes(uniforms), normals: toBytes(rng.standardNormal(job.normals)) };
  }
  if (job.kind === "plain") {
    const rng = new sampler.CounterRNG(job.seed, 0);
    const logits = fromBytes(job.logits);
    const tokens = [];
    for (let i = 0; i < job.draws; i++) tokens.push(sampler.gumbelMax(logits, rng, job.temperature));
    return { tokens, gumbels: toBytes(new sampler.CounterRNG(job.seed, 0).gumbel(job.gumbels)) };
  }
  if (job.kind === "sum") return { total: toBytes([sampler.pairwiseSum(fromBytes(job.values), 0, job.count)]) };
  if (job.kind === "rules") {
    const settings = sampler.checkSettings(job.settings);
    const rules = sampler.buildRules(settings);
    const rng = new sampler.CounterRNG(settings.seed, 0);
    const shaped = sampler.applyRules(rules, job.history, fromBytes(job.logits));
    let token = null;
    let error = null;
    try {
      token = sampler.isGreedy(settings) ? sampler.argmax(shaped) : sampler.draw(shaped, rng);
    } catch (e) {
      error = e.message;
    }
    return { shaped: toBytes(shaped), token, error };
  }
  if (job.kind === "prime") {
    const domain = new sampler.CharsDomain(job.domain);
    try {
      const [ids, hidden] = domain.primed(job.prime);
      return { ids, hidden };
    } catch (e) {
      return { error: e.message };
    }
  }
  if (job.kind === "wrap") return { lines: strokes.wrapLines(job.text, job.width) };
  if (job.kind === "format") return { texts: Array.from(fromBytes(job.values), strokes.fixed1), repr: strokes.pyRepr(job.text) };
  throw new Error(`unknown job ${job.kind}`);
}

let input = "";
process.stdin.on("data", (chunk) => (input += chunk));
process.stdin.on("end", () => process.stdout.write(JSON.stringify(JSON.parse(input).map(run))));
