/**
 * Exactly once across a restart that comes after the events stream's duplicate window: an inferencer killed -9
 * after publishing the events of records its checkpoint does not cover, and started again only once the stream
 * forgot their msg ids (more than 2 minutes later: a crash loop's backoff, a host down for longer, no other
 * instance). The replay must not store those events a second time. The window's passing is simulated by
 * shrinking the stream's duplicate window while no inferencer runs (the server then forgets the ids at once).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { jetstreamManager } from '@nats-io/jetstream';
import { nanos } from '@nats-io/nats-core';
import { Objm } from '@nats-io/obj';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OBJ_STATE, STREAM_EVENTS } from '@gammaray/wire';
import { startCapture, type CaptureProcess } from '../support/capture-process.js';
import { dataFileImage, readDiskEvents, waitForWriteEvent, writeDataBlock } from '../support/data-image.js';
import { startInferencer, type InferencerProcess } from '../support/inferencer-process.js';
import { startNatsServer, type NatsServer } from '../support/nats-server.js';

const DISK = 'vm1';
const BLOCK = 4096;

let work: string;
let nats: NatsServer;
let capture: CaptureProcess | undefined;
let inferencer: InferencerProcess | undefined;
let nc: NatsConnection;
/** Physical blocks of /data.bin's first four logical blocks. */
const blocks: number[] = [];

/** Makes GAMMARAY_EVENTS forget every msg id it has seen, as 2 minutes without the inferencer would. */
async function forgetMsgIds(): Promise<void> {
  const jsm = await jetstreamManager(nc);
  const info = await jsm.streams.info(STREAM_EVENTS);
  const window = info.config.duplicate_window;
  await jsm.streams.update(STREAM_EVENTS, { ...info.config, duplicate_window: nanos(500) });
  await new Promise((r) => setTimeout(r, 2_000));
  await jsm.streams.update(STREAM_EVENTS, { ...info.config, duplicate_window: window });
}

const writeBlock = (block: number, pattern: number) => writeDataBlock(capture!.url(DISK), block, BLOCK, pattern); // ok: started in beforeAll
const readEvents = () => readDiskEvents(nc, DISK);
const waitForWrite = (pattern: number) => waitForWriteEvent(nc, DISK, pattern, () => inferencer?.logs() ?? '');

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'gammaray-late-restart-'));
  nats = await startNatsServer({ jetstream: true });
  const made = await dataFileImage(work, 'vm1.img', 4, BLOCK);
  const image = made.image;
  blocks.push(...made.blocks);
  capture = await startCapture(nats.url, { [DISK]: image });
  nc = await connect({ servers: nats.url });
}, 60_000);

afterAll(async () => {
  await inferencer?.kill9();
  await capture?.stop();
  await nc?.close();
  await nats?.stop();
  if (work) rmSync(work, { recursive: true, force: true });
});

describe('an inferencer restarted after the duplicate window', () => {
  it('does not store again the events it published after its checkpoint before it was killed', async () => {
    inferencer = await startInferencer(nats.url, ['--checkpoint-interval', '3600']);
    await inferencer.waitForLog(/disk crawled/);
    // Stored, but after the crawl's checkpoint (the interval never comes).
    await writeBlock(blocks[0]!, 0x11); // ok: four blocks
    await writeBlock(blocks[1]!, 0x22); // ok
    await waitForWrite(0x11);
    await waitForWrite(0x22);
    await inferencer.kill9();

    await forgetMsgIds();
    inferencer = await startInferencer(nats.url, ['--checkpoint-interval', '1']);
    await inferencer.waitForLog(/restored from checkpoint/);
    // Read by a headers-only consumer (message gets are the fallback of older permissions).
    await inferencer.waitForLog(/"events":2,"ms":\d+,"how":"consumer","msg":"events of records after the checkpoint are stored already/);
    await writeBlock(blocks[2]!, 0x33); // ok
    await waitForWrite(0x33); // the replay of the first two writes is behind it
    await new Promise((r) => setTimeout(r, 1_500)); // an interval checkpoint, with the events sequence it covers

    // Once more, from a checkpoint the restarted inferencer wrote.
    await inferencer.kill9();
    await writeBlock(blocks[3]!, 0x44); // ok
    inferencer = await startInferencer(nats.url, ['--checkpoint-interval', '3600']);
    await waitForWrite(0x44);
    await writeBlock(blocks[0]!, 0x55); // ok
    await waitForWrite(0x55);
    await inferencer.kill9();
    await forgetMsgIds();
    inferencer = await startInferencer(nats.url, ['--checkpoint-interval', '3600']);
    await inferencer.waitForLog(/restored from checkpoint/);
    await writeBlock(blocks[1]!, 0x66); // ok
    await waitForWrite(0x66);
    expect(await inferencer.stop()).toBe(0);

    const all = await readEvents();
    const ids = all.map((s) => `${s.event.seq}:${s.event.idx}`);
    expect(ids.length - new Set(ids).size).toBe(0);
    expect(new Set(all.map((s) => s.msgId)).size).toBe(all.length);
    const writes = all.filter((s) => s.event.kind === 'write').map((s) => s.event.data?.[0]);
    expect(writes).toEqual([0x11, 0x22, 0x33, 0x44, 0x55, 0x66]);
  }, 90_000);

  it('a crawl that finds events of the disk but no checkpoint (killed before storing it) is a resync and a new snapshot', async () => {
    // As if the inferencer had been killed between the crawl's snapshot and its checkpoint: events, no checkpoint.
    inferencer = await startInferencer(nats.url, ['--checkpoint-interval', '3600']);
    await inferencer.waitForLog(/restored from checkpoint/);
    await inferencer.kill9();
    await (await new Objm(nc).open(OBJ_STATE)).delete(DISK);
    const before = (await readEvents()).length;
    // A write while no inferencer runs: the next crawl sees it, no event reports it.
    await writeBlock(blocks[2]!, 0x77); // ok: four blocks
    inferencer = await startInferencer(nats.url, ['--checkpoint-interval', '3600']);
    await inferencer.waitForLog(/disk crawled/);
    await writeBlock(blocks[3]!, 0x88); // ok
    await waitForWrite(0x88);
    expect(await inferencer.stop()).toBe(0);

    const after = (await readEvents()).slice(before).map((s) => s.event);
    // A consumer folding events drops its tree at the resync and takes the new crawl's (which has 0x77 in it).
    expect(after.map((e) => e.kind)).toEqual(['resync', 'snapshot', 'write']);
    expect(after[0]!.reason).toMatch(/no checkpoint/); // ok: three events
  }, 60_000);
});
