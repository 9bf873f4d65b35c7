#!/usr/bin/env node
/**
 * bench/infer/replay.mjs: one timed replay, run by bench/infer/run.mjs in a fresh process per run so that the
 * peak RSS it reports belongs to this replay alone. Not meant to be run by hand.
 *
 *   node [--expose-gc] bench/infer/replay.mjs --nats URL --image START.img --disk ID --records N --files N
 *
 * The records are already in stream GAMMARAY_WRITES (the parent published them, untimed). Timed: bootstrap a
 * DiskInferencer from the starting image (block reads answered by pread on the file, at sequence 0), then read
 * every record of `gammaray.<disk>.writes` with an ordered consumer, decode it, apply it, and BSON-encode every
 * event it yields (encodeEvent), as the service does before publishing. With --publish, checkpoints are made on the
 * service's schedule and stored in its object store, and each event is also
 * published to GAMMARAY_EVENTS as the service publishes it (its EventPublisher: `Nats-Msg-Id`, path header, 256
 * in flight) and the timed part ends when every event is stored. Progress on stderr; one JSON line with the
 * figures on stdout.
 */
import { parseArgs } from 'node:util';
import { connect } from '@nats-io/transport-node';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { DiskInferencer, encodeEvent, eventMsgId } from '@gammaray/inferencer';
import { Objm } from '@nats-io/obj';
import { CHECKPOINT_COST_FACTOR, CheckpointChain, CheckpointStore, DEFAULT_CHECKPOINT_INTERVAL_S, EventPublisher, ensureEventsStream } from '@gammaray/service-inferencer';
import { fileFetcher } from './file-fetcher.mjs';
import { noter } from '../lib/report.mjs';
import { OBJ_STATE, STREAM_EVENTS, STREAM_WRITES, decodeWriteRecord, eventsSubject, writesSubject } from '@gammaray/wire';

/**
 * Records the consumer asks for at a time: the service's value (services/inferencer disk-worker.ts). It was 16
 * here, to keep buffered records out of the peak RSS; measured (10:14 UTC, one run each): 4 -> 7.4 s, 64 -> 3.2 s
 * for the same replay, and the peak above the baseline 3,496 against 3,580 B per inode: fewer records per pull
 * cost round trips and saved almost nothing. (Not max_bytes: with nats-server 2.9 an ordered consumer pulling by
 * bytes stalled a few dozen records before the end, see docs/benchmarks.md.)
 */
const CONSUME_MAX_MESSAGES = 64;
const RECEIVE_IDLE_MS = 30_000;

const note = noter('bench/infer replay');

async function main() {
  const { values: v } = parseArgs({
    options: {
      nats: { type: 'string' },
      image: { type: 'string' },
      disk: { type: 'string' },
      records: { type: 'string' },
      files: { type: 'string' },
      publish: { type: 'boolean', default: false },
    },
  });
  const want = Number(v.records);
  const files = Number(v.files);
  const rssAfterImports = process.memoryUsage().rss;
  const maxRssAfterImports = process.resourceUsage().maxRSS * 1024;
  const nc = await connect({ servers: v.nats, noAsyncTraces: true });
  const js = jetstream(nc);
  if (v.publish) await ensureEventsStream(await jetstreamManager(nc));
  // The baseline: modules loaded and a NATS connection open, nothing of the disk yet.
  global.gc?.();
  const base = process.memoryUsage();
  const rssBaseline = base.rss;
  const { fetcher, close } = fileFetcher(v.image, 0);

  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const boot = await DiskInferencer.bootstrap(fetcher, { disk: v.disk }, 0, new Date(0));
  const inf = boot.inferencer;
  const t1 = performance.now();
  const kinds = {};
  let events = 0;
  let eventBytes = 0;
  // As the service's worker does: publish each event without awaiting unless the publisher's window is full.
  const publisher = v.publish ? new EventPublisher(nc) : undefined;
  const count = async (list) => {
    for (const e of list) {
      const bytes = encodeEvent(e);
      eventBytes += bytes.length;
      kinds[e.kind] = (kinds[e.kind] ?? 0) + 1;
      events++;
      if (publisher) {
        const room = publisher.publish(eventsSubject(v.disk, e.kind), bytes, eventMsgId(e), e.path);
        if (room) await room;
      }
    }
  };
  await count(boot.events);
  // With --publish, checkpoints too, as the service's worker makes them: after the default interval, and no sooner
  // than CHECKPOINT_COST_FACTOR times what the last took; every event before it stored first; the state written as
  // its documents into the object store; a full one, then deltas (CheckpointChain, the worker's own).
  const checkpoints = { count: 0, deltas: 0, seconds: 0, bytes: 0 };
  const store = v.publish ? new CheckpointStore(await new Objm(nc).create(OBJ_STATE)) : undefined;
  const chain = store ? new CheckpointChain(inf, store, v.disk) : undefined;
  let lastCheckpointAt = performance.now();
  let checkpointGapMs = DEFAULT_CHECKPOINT_INTERVAL_S * 1000;
  const maybeCheckpoint = async (appliedSeq, force = false) => {
    if (!store || (!force && performance.now() - lastCheckpointAt < checkpointGapMs)) return;
    await publisher.flush();
    const c0 = performance.now();
    const cp = chain.take();
    lastCheckpointAt = performance.now();
    const bytes = cp.bytes;
    await cp.store({ appliedSeq, size: fetcher.size });
    if (cp.delta) checkpoints.deltas++;
    const cost = performance.now() - c0;
    checkpointGapMs = Math.max(DEFAULT_CHECKPOINT_INTERVAL_S * 1000, cost * CHECKPOINT_COST_FACTOR);
    checkpoints.count++;
    checkpoints.seconds += cost / 1000;
    checkpoints.bytes = bytes;
    note(`${cp.delta ? 'delta ' : ''}checkpoint at ${appliedSeq}: ${(bytes / 1e6).toFixed(1)} MB in ${cost.toFixed(0)} ms; next in ${(checkpointGapMs / 1000).toFixed(1)} s or later`);
  };
  // The service checkpoints at once after the crawl (timed with the bootstrap, as the service's would be).
  await maybeCheckpoint(inf.appliedSeq, true);
  const nodesAfterBootstrap = inf.nodes.size;
  const rssAfterBootstrap = process.memoryUsage().rss;
  note(`bootstrap ${(t1 - t0).toFixed(0)} ms, ${nodesAfterBootstrap} nodes; consuming ${want} records`);

  const consumer = await js.consumers.get(STREAM_WRITES, { filter_subjects: writesSubject(v.disk) });
  const messages = await consumer.consume({ max_messages: CONSUME_MAX_MESSAGES });
  let records = 0;
  let recordBytes = 0;
  let lastSeq = 0;
  let idle;
  const armIdle = () => {
    clearTimeout(idle);
    idle = setTimeout(() => {
      note(`no record for ${RECEIVE_IDLE_MS / 1000} s after ${records} of ${want}; giving up`);
      messages.stop();
    }, RECEIVE_IDLE_MS);
  };
  armIdle();
  let nextProgress = 0.25;
  for await (const m of messages) {
    const rec = decodeWriteRecord(m.data);
    recordBytes += m.data.length;
    await count(await inf.apply(m.seq, rec));
    await maybeCheckpoint(m.seq);
    lastSeq = m.seq;
    records++;
    if (records >= want) break;
    if (records >= want * nextProgress) {
      note(`${records}/${want} records, ${events} events, ${((performance.now() - t1) / 1000).toFixed(1)} s`);
      nextProgress += 0.25;
    }
    armIdle();
  }
  clearTimeout(idle);
  messages.stop();
  const t2Stream = performance.now();
  await publisher?.flush();
  publisher?.close();
  const t2 = performance.now();
  const cpu = process.cpuUsage(cpu0);
  const maxRss = process.resourceUsage().maxRSS * 1024;
  const rssEnd = process.memoryUsage().rss;
  const trackedInodes = inf.nodes.size;
  const eventsStored = v.publish ? (await (await jetstreamManager(nc)).streams.info(STREAM_EVENTS)).state.messages : undefined;
  close();
  await nc.close();
  // What the engine keeps once garbage is gone (diagnostic: the peak also holds garbage the GC had not freed yet).
  // Twice, with a pause: ArrayBuffer backing stores are freed by a concurrent sweeper after the collection.
  global.gc?.();
  await new Promise((r) => setTimeout(r, 200));
  global.gc?.();
  const mem = process.memoryUsage();
  // ok: keeps the engine reachable until after the measurement above
  if (inf.nodes.size !== trackedInodes) throw new Error('the tree changed after the last record');

  if (records < want) throw new Error(`received ${records} of ${want} records`);
  if (v.publish && eventsStored !== events) throw new Error(`GAMMARAY_EVENTS holds ${eventsStored} events, ${events} were published`);
  const result = {
    records,
    lastSeq,
    recordBytes,
    events,
    eventBytes,
    kinds,
    files,
    trackedInodes,
    nodesAfterBootstrap,
    bootstrapSeconds: (t1 - t0) / 1000,
    streamSeconds: (t2 - t1) / 1000,
    published: v.publish === true,
    eventsStored,
    publishDrainSeconds: (t2 - t2Stream) / 1000,
    totalSeconds: (t2 - t0) / 1000,
    cpuSeconds: (cpu.user + cpu.system) / 1e6,
    rssAfterImports,
    maxRssAfterImports,
    rssBaseline,
    rssAfterBootstrap,
    rssEnd,
    maxRss,
    baseline: { rss: base.rss, heapUsed: base.heapUsed, heapTotal: base.heapTotal, external: base.external, arrayBuffers: base.arrayBuffers },
    afterGc: { rss: mem.rss, heapUsed: mem.heapUsed, heapTotal: mem.heapTotal, external: mem.external, arrayBuffers: mem.arrayBuffers },
    // JS heap plus ArrayBuffer contents still reachable at the end, above the baseline: the engine's state.
    retainedBytes: mem.heapUsed + mem.arrayBuffers - (base.heapUsed + base.arrayBuffers),
    consumeMaxMessages: CONSUME_MAX_MESSAGES,
    checkpointCount: checkpoints.count,
    checkpointDeltas: checkpoints.deltas,
    checkpointSeconds: checkpoints.seconds,
    checkpointBytes: checkpoints.bytes,
  };
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

main().catch((err) => {
  process.stderr.write(`bench/infer replay: error: ${err?.stack ?? err}\n`);
  process.exit(1);
});
