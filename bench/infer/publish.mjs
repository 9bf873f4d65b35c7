#!/usr/bin/env node
/**
 * bench/infer/publish.mjs: how fast the inferencer service gets its events into GAMMARAY_EVENTS, against nats.js'
 * own `js.publish` doing the same, in the same run, on the same nats-server.
 *
 *   node bench/infer/publish.mjs [--events N] [--runs N] [--window N]
 *
 * Each run, alternating the order: a fresh nats-server (`-js`, store in a temp dir), GAMMARAY_EVENTS created as
 * the service creates it, then N events of the bench recording's average size (427 bytes) with the headers the
 * service sends (Nats-Msg-Id, Gammaray-Path, Gammaray-Worker, Gammaray-Epoch) published
 *   (a) by `js.publish` with `window` publishes outstanding (what the service did before), and
 *   (b) by the service's EventPublisher (AckPublisher of @gammaray/ops underneath), as its worker calls it,
 * each timed until every event is acknowledged; the stream must then hold exactly the events sent. Reported:
 * events/s, this process's CPU per event, nats-server's CPU per event, and the ratio (b)/(a).
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { connect } from '@nats-io/transport-node';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { headers } from '@nats-io/nats-core';
import { EventPublisher, ensureEventsStream } from '@gammaray/service-inferencer';
import { HEADER_EPOCH, HEADER_PATH, HEADER_WORKER, STREAM_EVENTS, encodePathHeader, eventsSubject } from '@gammaray/wire';
import { readBenchArgs } from '../lib/args.mjs';
import { freePort, installExitHandlers, median, probe, removeOnExit, sleep, start, stop } from '../lib/procs.mjs';

const NATS_SERVER = process.env.NATS_SERVER ?? 'nats-server';
const EVENT_BYTES = 427;
const note = (m) => process.stderr.write(`bench/infer publish: ${m}\n`);

const { int } = readBenchArgs('bench/infer/publish.mjs', 'usage: node bench/infer/publish.mjs [--events N] [--runs N] [--window N]\n', {
  events: { type: 'string' },
  runs: { type: 'string' },
  window: { type: 'string' },
});
const N = int('events', 50_000, 1);
const RUNS = int('runs', 3, 1);
const WINDOW = int('window', 256, 1);
installExitHandlers(note);

/** user + system CPU seconds of a process, from /proc. */
function cpuOf(pid) {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(f[11]) + Number(f[12])) / 100;
}
const selfCpu = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
};

const data = new Uint8Array(EVENT_BYTES).fill(0x5a);
const pathOf = (i) => `/d${i % 50}/f${i}`;

async function viaJsPublish(js, tag) {
  const pending = [];
  for (let i = 0; i < N; i++) {
    if (pending.length >= WINDOW) await pending.shift();
    const h = headers();
    h.set(HEADER_PATH, encodePathHeader(pathOf(i)));
    h.set(HEADER_WORKER, 'bench-worker');
    h.set(HEADER_EPOCH, '1');
    pending.push(js.publish(eventsSubject('bench', 'create'), data, { msgID: `bench:${tag}:${i}`, headers: h, timeout: 30_000 }));
  }
  await Promise.all(pending);
}

async function viaEventPublisher(nc, tag) {
  const p = new EventPublisher(nc, { window: WINDOW, worker: 'bench-worker', epoch: 1 });
  for (let i = 0; i < N; i++) {
    const room = p.publish(eventsSubject('bench', 'create'), data, `bench:${tag}:${i}`, pathOf(i));
    if (room) await room;
  }
  await p.flush();
  p.close();
}

async function measure(kind, run) {
  const dir = mkdtempSync('/var/tmp/gammaray-bench-publish-');
  removeOnExit.add(dir);
  const port = await freePort();
  const server = start(NATS_SERVER, ['-js', '-a', '127.0.0.1', '-p', String(port), '-sd', dir]);
  for (let i = 0; !(await probe(port, 'INFO')); i++) {
    if (i > 100) throw new Error('nats-server did not start');
    await sleep(50);
  }
  const nc = await connect({ servers: `nats://127.0.0.1:${port}`, noAsyncTraces: true });
  try {
    const jsm = await jetstreamManager(nc);
    await ensureEventsStream(jsm);
    const c0 = selfCpu();
    const s0 = cpuOf(server.pid);
    const t0 = performance.now();
    if (kind === 'js.publish') await viaJsPublish(jetstream(nc), `r${run}`);
    else await viaEventPublisher(nc, `r${run}`);
    const seconds = (performance.now() - t0) / 1000;
    const r = { kind, seconds, eventsPerS: N / seconds, cpuUsPerEvent: ((selfCpu() - c0) * 1e6) / N, serverCpuUsPerEvent: ((cpuOf(server.pid) - s0) * 1e6) / N };
    const stored = (await jsm.streams.info(STREAM_EVENTS)).state.messages;
    if (stored !== N) throw new Error(`${kind}: GAMMARAY_EVENTS holds ${stored} events, ${N} were sent`);
    note(`run ${run} ${kind}: ${Math.round(r.eventsPerS).toLocaleString('en-US')} events/s, ${r.cpuUsPerEvent.toFixed(1)} us CPU per event here, ${r.serverCpuUsPerEvent.toFixed(1)} us in nats-server`);
    return r;
  } finally {
    await nc.close();
    await stop(server, 5_000);
    rmSync(dir, { recursive: true, force: true });
  }
}

const samples = { 'js.publish': [], EventPublisher: [] };
for (let run = 1; run <= RUNS; run++) {
  const order = run % 2 === 1 ? ['js.publish', 'EventPublisher'] : ['EventPublisher', 'js.publish'];
  for (const kind of order) samples[kind].push(await measure(kind, run));
}
const med = (kind, f) => median(samples[kind].map((s) => s[f]));
const rows = Object.keys(samples).map((k) => `| ${k} | ${Math.round(med(k, 'eventsPerS')).toLocaleString('en-US')} | ${med(k, 'cpuUsPerEvent').toFixed(1)} | ${med(k, 'serverCpuUsPerEvent').toFixed(1)} |`);
process.stdout.write(
  [
    `bench/infer publish: ${N} events of ${EVENT_BYTES} B with the service's headers, ${WINDOW} outstanding, ${RUNS} run(s), medians`,
    '| publisher | events/s | CPU us/event (publisher) | CPU us/event (nats-server) |',
    '|---|---:|---:|---:|',
    ...rows,
    `EventPublisher / js.publish: ${(med('EventPublisher', 'eventsPerS') / med('js.publish', 'eventsPerS')).toFixed(2)}x the events/s, ${(med('EventPublisher', 'cpuUsPerEvent') / med('js.publish', 'cpuUsPerEvent')).toFixed(2)}x the CPU per event`,
    '',
  ].join('\n'),
);
process.exit(0);
