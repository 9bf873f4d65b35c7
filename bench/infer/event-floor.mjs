#!/usr/bin/env node
/**
 * bench/infer/event-floor.mjs: the least time any inferencer needs for the benchmark's stream on this machine,
 * whatever its engine: the time to get its events into GAMMARAY_EVENTS alone.
 *
 * Run by bench/infer/run.mjs right after a publishing replay, on the same nats-server: it reads every event that
 * replay stored (subject, BSON, Nats-Msg-Id, Gammaray-Path; untimed), makes GAMMARAY_EVENTS anew as the service
 * does, then publishes the same events with the service's EventPublisher exactly as the worker does (no await
 * while the window has room), timed until every one is stored. The stream must then hold exactly those events.
 *
 * The contract (one BSON document per event, one message each, subject gammaray.<disk>.fs.<kind>) makes this a
 * lower bound of "inference with events published": an engine that cost nothing would still take this long. So
 * `capture ingest / this` is the highest speed ratio reachable here (bench/infer/run.mjs prints it).
 *
 *   node bench/infer/event-floor.mjs --nats URL --events N
 *
 * Prints one JSON line: {events, bytes, seconds, cpuSeconds, eventsPerS}.
 */
import { parseArgs } from 'node:util';
import { connect } from '@nats-io/transport-node';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { EventPublisher, ensureEventsStream } from '@gammaray/service-inferencer';
import { HEADER_PATH, STREAM_EVENTS, decodePathHeader } from '@gammaray/wire';
import { noter } from '../lib/report.mjs';

const note = noter('bench/infer floor');
const RECEIVE_IDLE_MS = 30_000;

async function main() {
  const { values: v } = parseArgs({ options: { nats: { type: 'string' }, events: { type: 'string' } } });
  const want = Number(v.events);
  if (!v.nats || !Number.isSafeInteger(want) || want <= 0) throw new Error('usage: node bench/infer/event-floor.mjs --nats URL --events N');
  const nc = await connect({ servers: v.nats, noAsyncTraces: true });
  const jsm = await jetstreamManager(nc);
  const held = await info(jsm);
  if (held !== want) throw new Error(`GAMMARAY_EVENTS holds ${held} events, expected ${want}`);

  // Untimed: every stored event, as the service sent it.
  const events = [];
  let bytes = 0;
  const consumer = await jetstream(nc).consumers.get(STREAM_EVENTS);
  const messages = await consumer.consume({ max_messages: 1024 });
  let idle;
  const armIdle = () => {
    clearTimeout(idle);
    idle = setTimeout(() => messages.stop(), RECEIVE_IDLE_MS);
  };
  armIdle();
  for await (const m of messages) {
    const msgId = m.headers?.get('Nats-Msg-Id');
    const path = m.headers?.get(HEADER_PATH);
    if (!msgId || path === undefined) throw new Error(`event ${m.seq} has no Nats-Msg-Id or ${HEADER_PATH} header`);
    const decoded = decodePathHeader(path);
    if (decoded === undefined) throw new Error(`event ${m.seq}: ${HEADER_PATH} ${JSON.stringify(path)} does not decode`);
    events.push({ subject: m.subject, data: m.data.slice(), msgId, path: decoded });
    bytes += m.data.length;
    if (events.length >= want) break;
    armIdle();
  }
  clearTimeout(idle);
  messages.stop();
  if (events.length !== want) throw new Error(`read ${events.length} of ${want} events back`);
  await jsm.streams.delete(STREAM_EVENTS);
  await ensureEventsStream(jsm);
  note(`${want} events (${(bytes / 1e6).toFixed(1)} MB) read back; publishing them alone`);

  const publisher = new EventPublisher(nc);
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  for (const e of events) {
    const room = publisher.publish(e.subject, e.data, e.msgId, e.path);
    if (room) await room;
  }
  await publisher.flush();
  const seconds = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  publisher.close();
  const stored = await info(jsm);
  if (stored !== want) throw new Error(`GAMMARAY_EVENTS holds ${stored} events after publishing ${want}`);
  await nc.close();
  process.stdout.write(`${JSON.stringify({ events: want, bytes, seconds, cpuSeconds: (cpu.user + cpu.system) / 1e6, eventsPerS: want / seconds })}\n`);
}

async function info(jsm) {
  return (await jsm.streams.info(STREAM_EVENTS)).state.messages;
}

main().catch((err) => {
  process.stderr.write(`bench/infer floor: ${err?.stack ?? err}\n`);
  process.exit(1);
});
