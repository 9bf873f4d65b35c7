/**
 * `gammaray follow --since TIME` with a TIME still to come: it says on stderr that it waits for events stored from
 * then on (silent, it looked hung), prints nothing stored before TIME, and the first event stored after it. An
 * unparseable TIME is a user error (exit 2) naming the formats. Real nats-server, events published by the test.
 */
import { execFile, spawn } from 'node:child_process';
import { promisify } from 'node:util';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { afterAll, describe, expect, it } from 'vitest';
import { encodeEvent, type FsEvent } from '@gammaray/inferencer';
import { DiskState, EVENTS_WILDCARD, KV_DISKS, STREAM_EVENTS, encodeDiskEntry, eventsSubject } from '@gammaray/wire';
import { CLI } from '../support/capture-process.js';
import { startNatsServer, type NatsServer } from '../support/nats-server.js';

const exec = promisify(execFile);
let nats: NatsServer | undefined;
let nc: NatsConnection | undefined;
afterAll(async () => {
  await nc?.close();
  await nats?.stop();
});

async function until(f: () => boolean, what: string, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (!f()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('gammaray follow --since', () => {
  it('refuses a time it cannot read, naming the formats it takes (exit 2)', async () => {
    const r = await exec('node', [CLI, 'follow', 'vm1', '--since', 'yesterday', '--nats', 'nats://127.0.0.1:1']).catch((e: { code: number; stderr: string }) => e);
    expect(r).toMatchObject({ code: 2 });
    expect((r as { stderr: string }).stderr.trim()).toBe('gammaray: --since must be an ISO 8601 time such as 2026-11-28T05:30:00Z, or a duration ago such as 10m (s, m, h, d), got "yesterday"');
  });

  it('with a time to come says it waits, skips what is stored before it and prints what comes after', async () => {
    nats = await startNatsServer({ jetstream: true });
    nc = await connect({ servers: nats.url });
    await (await jetstreamManager(nc)).streams.add({ name: STREAM_EVENTS, subjects: [EVENTS_WILDCARD] });
    const kv = await new Kvm(nc).create(KV_DISKS);
    await kv.put('vm1', encodeDiskEntry({ disk: 'vm1', size: 1 << 20, blockSize: 512, image: '/vm1.img', capture: 'test', firstSeq: 1, state: DiskState.Attached }));
    const stat = { mode: 0o644, uid: 0, gid: 0, size: 0, nlink: 1, flags: 0, atime: { sec: 1, nsec: 0 }, mtime: { sec: 1, nsec: 0 }, ctime: { sec: 1, nsec: 0 } };
    const event = (path: string, seq: number): FsEvent => ({ v: 1, disk: 'vm1', ino: 12, type: 'file', idx: 0, ts: new Date(), stat, kind: 'create', path, seq });
    const js = jetstream(nc);
    await js.publish(eventsSubject('vm1', 'create'), encodeEvent(event('/stored-long-before', 1)));

    // Far enough ahead for node to start on a loaded machine, near enough for a short test.
    const since = new Date(Date.now() + 8_000);
    const child = spawn('node', [CLI, 'follow', 'vm1', '--json', '--since', since.toISOString(), '--nats', nats.url], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    try {
      await until(() => err.includes('gammaray: note:') || child.exitCode !== null, 'the note', 7_000);
      expect(err).toMatch(new RegExp(`^gammaray: note: --since ${since.toISOString().replace(/[.]/g, '\\.')} is in the future \\(it is \\S+ now\\): waiting for events stored from then on \\(Ctrl-C to stop\\)\\n$`));
      // Stored now, before TIME: not printed.
      await js.publish(eventsSubject('vm1', 'create'), encodeEvent(event('/before-since', 2)));
      await until(() => Date.now() > since.getTime() + 300, 'the time', 15_000);
      await js.publish(eventsSubject('vm1', 'create'), encodeEvent(event('/after-since', 3)));
      await until(() => out.includes('\n') || child.exitCode !== null, 'an event', 10_000);
      await new Promise((r) => setTimeout(r, 300)); // nothing more arrives
    } finally {
      child.kill('SIGINT');
    }
    expect(await exited, err).toBe(0);
    expect(out.trim().split('\n').map((l) => (JSON.parse(l) as { path: string }).path)).toEqual(['/after-since']);
  }, 60_000);
});
