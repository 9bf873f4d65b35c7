/**
 * The read-ahead after a restart on a NATS account that may not create consumers on GAMMARAY_EVENTS (permissions
 * of older deployments): the inferencer reads back the msg ids of the events stored after its checkpoint one
 * message get at a time instead of with a headers-only consumer, and its replay stores none of them again.
 * A real nats-server with an account whose `inferencer` user has the permissions of deploy/nats/compose-auth.conf
 * less every `$JS.API.CONSUMER.*` (and flow control) subject of GAMMARAY_EVENTS; the capture and this test connect
 * as the account's unrestricted default user. The inferencer is killed -9 after publishing events its checkpoint
 * does not cover, the stream forgets their msg ids (as 2 minutes would), and it is started again.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { jetstreamManager } from '@nats-io/jetstream';
import { nanos } from '@nats-io/nats-core';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { STREAM_EVENTS } from '@gammaray/wire';
import { startCapture, type CaptureProcess } from '../support/capture-process.js';
import { dataFileImage, readDiskEvents, waitForWriteEvent, writeDataBlock } from '../support/data-image.js';
import { startNatsServer, type NatsServer } from '../support/nats-server.js';
import { spawnService, type ServiceProcess } from '../support/service-process.js';

const DISK = 'vm1';
const BLOCK = 4096;
const PASSWORD = 'inferencer-pw-for-tests';
const COMPOSE_AUTH = new URL('../../deploy/nats/compose-auth.conf', import.meta.url);

let work: string;
let nats: NatsServer;
let capture: CaptureProcess | undefined;
let inferencer: ServiceProcess | undefined;
let nc: NatsConnection;
const blocks: number[] = [];

interface NatsUser {
  user: string;
  password: unknown;
  permissions?: { publish?: { allow?: string[] } };
}

/** The deployed permissions of user `inferencer`, without the subjects that create or drive consumers on GAMMARAY_EVENTS. */
function inferencerWithoutEventConsumers(): { allow: string[]; removed: string[] } {
  const line = readFileSync(COMPOSE_AUTH, 'utf8').split('\n').find((l) => l.startsWith('accounts: '));
  if (!line) throw new Error('no accounts line in compose-auth.conf');
  const accounts = JSON.parse(line.slice('accounts: '.length).replace(/"password":\$[A-Z0-9_]+/g, '"password":""')) as Record<string, { users: NatsUser[] }>;
  const user = Object.values(accounts).flatMap((a) => a.users).find((u) => u.user === 'inferencer');
  const all = user?.permissions?.publish?.allow ?? [];
  const consumerOfEvents = (s: string): boolean => /^\$JS\.(API\.CONSUMER\.|FC\.)/.test(s) && s.includes('GAMMARAY_EVENTS');
  return { allow: all.filter((s) => !consumerOfEvents(s)), removed: all.filter(consumerOfEvents) };
}

function startInferencer(args: readonly string[]): Promise<ServiceProcess> {
  const p = spawnService(['inferencer', '--nats', nats.url, ...args], { ...process.env, GAMMARAY_NATS_USER: 'inferencer', GAMMARAY_NATS_PASSWORD: PASSWORD });
  return p.waitForLog(/inferencer started/).then(() => p);
}

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
  work = mkdtempSync(join(tmpdir(), 'gammaray-readahead-fallback-'));
  const { allow, removed } = inferencerWithoutEventConsumers();
  expect(removed).toContain('$JS.API.CONSUMER.*.GAMMARAY_EVENTS');
  expect(allow).toContain('$JS.API.STREAM.MSG.GET.GAMMARAY_EVENTS');
  const conf = join(work, 'nats.conf');
  const account = {
    jetstream: 'enabled',
    users: [
      { user: 'admin', password: 'admin-pw-for-tests' },
      { user: 'inferencer', password: PASSWORD, permissions: { publish: { allow }, subscribe: { allow: ['_INBOX.>'] } } },
    ],
  };
  writeFileSync(conf, `accounts: ${JSON.stringify({ GAMMARAY: account })}\nno_auth_user: admin\n`);
  nats = await startNatsServer({ jetstream: true, args: ['-c', conf] });
  const made = await dataFileImage(work, 'vm1.img', 3, BLOCK);
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

describe('the read-ahead after a restart, without consumers on GAMMARAY_EVENTS', () => {
  it('reads the stored events back with message gets and stores none of them twice', async () => {
    inferencer = await startInferencer(['--checkpoint-interval', '3600']);
    await inferencer.waitForLog(/disk crawled/);
    // Stored, but after the crawl's checkpoint (the interval never comes).
    await writeBlock(blocks[0]!, 0x11); // ok: three blocks
    await writeBlock(blocks[1]!, 0x22); // ok
    await waitForWrite(0x11);
    await waitForWrite(0x22);
    await inferencer.kill9();
    await forgetMsgIds();

    inferencer = await startInferencer(['--checkpoint-interval', '1']);
    await inferencer.waitForLog(/restored from checkpoint/);
    await inferencer.waitForLog(/cannot read the events stored after the checkpoint with a consumer/, 30_000);
    await inferencer.waitForLog(/"events":2,"ms":\d+,"how":"message gets","msg":"events of records after the checkpoint are stored already/, 30_000);
    await writeBlock(blocks[2]!, 0x33); // ok
    await waitForWrite(0x33); // the replay of the first two writes is behind it


    expect(await inferencer.stop()).toBe(0);

    const all = await readEvents();
    const ids = all.map((s) => `${s.event.seq}:${s.event.idx}`);
    expect(ids.length - new Set(ids).size).toBe(0);
    expect(new Set(all.map((s) => s.msgId)).size).toBe(all.length);
    expect(all.filter((s) => s.event.kind === 'write').map((s) => s.event.data?.[0])).toEqual([0x11, 0x22, 0x33]);
    expect(inferencer.logs()).not.toMatch(/"level":50/);
  }, 120_000);
});
