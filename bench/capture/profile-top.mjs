#!/usr/bin/env node
/**
 * Summarises a V8 .cpuprofile (from `node bench/capture/run.mjs --profile DIR`): self time per function and per
 * file, the biggest first.
 *
 *   node bench/capture/profile-top.mjs FILE.cpuprofile [--top N] [--after FUNCTION]
 *
 * `--after transmit` counts only samples from the first one inside a function of that name on (skips start-up).
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

const { values: v, positionals } = parseArgs({ options: { top: { type: 'string', default: '40' }, after: { type: 'string' } }, allowPositionals: true });
if (positionals.length !== 1) {
  process.stderr.write('usage: node bench/capture/profile-top.mjs FILE.cpuprofile [--top N] [--after FUNCTION]\n');
  process.exit(2);
}
const prof = JSON.parse(readFileSync(positionals[0], 'utf8'));
const byId = new Map(prof.nodes.map((n) => [n.id, n]));
const parent = new Map();
for (const n of prof.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
const inside = (id, name) => {
  for (let p = id; p !== undefined; p = parent.get(p)) if (byId.get(p).callFrame.functionName === name) return true;
  return false;
};
let first = 0;
if (v.after !== undefined) {
  while (first < prof.samples.length && !inside(prof.samples[first], v.after)) first++;
}
const self = new Map();
const dt = prof.timeDeltas;
for (let i = first; i < prof.samples.length; i++) {
  const id = prof.samples[i];
  self.set(id, (self.get(id) ?? 0) + (dt[i] ?? 0));
}
const total = [...self.values()].reduce((a, b) => a + b, 0);
const fn = new Map();
const file = new Map();
for (const [id, us] of self) {
  const cf = byId.get(id).callFrame;
  const url = cf.url.replace(/^.*node_modules\/(\.pnpm\/[^/]+\/node_modules\/)?/, '').replace(/^file:\/\/.*\/work\/main\//, '');
  const k = `${cf.functionName || '(anonymous)'} ${url}:${cf.lineNumber + 1}`;
  fn.set(k, (fn.get(k) ?? 0) + us);
  const f = url || cf.functionName;
  file.set(f, (file.get(f) ?? 0) + us);
}
const top = Number(v.top);
const pct = (us) => `${((100 * us) / total).toFixed(1).padStart(5)}%`;
process.stdout.write(`total sampled ${(total / 1e6).toFixed(2)} s\n\nby function (self):\n`);
for (const [k, us] of [...fn].sort((a, b) => b[1] - a[1]).slice(0, top)) process.stdout.write(`${pct(us)}  ${k}\n`);
process.stdout.write('\nby file (self):\n');
for (const [k, us] of [...file].sort((a, b) => b[1] - a[1]).slice(0, 15)) process.stdout.write(`${pct(us)}  ${k}\n`);
