/**
 * `gammaray follow` text lines into a pipe (`follow vm1 > log`, what an audit log is): a name the guest chose
 * cannot make lines of its own. A name with a newline followed by what looks like another event prints as one
 * line with `\x0a`, as it does on a terminal; `--json` stays exact.
 */
import { spawn } from 'node:child_process';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { afterAll, describe, expect, it } from 'vitest';
import { encodeEvent, type FsEvent } from '@gammaray/inferencer';
import { Kvm } from '@nats-io/kv';
import { DiskState, EVENTS_WILDCARD, KV_DISKS, STREAM_EVENTS, encodeDiskEntry, eventsSubject } from '@gammaray/wire';
import { CLI } from '../support/capture-process.js';
import { startNatsServer, type NatsServer } from '../support/nats-server.js';

let nats: NatsServer | undefined;
let nc: NatsConnection | undefined;
afterAll(async () => {
  await nc?.close();
  await nats?.stop();
});

/** Runs follow with stdout piped until it printed `lines` lines, then Ctrl-C; its output. */
async function follow(args: string[], lines: number): Promise<string> {
  const child = spawn('node', [CLI, 'follow', 'vm1', '--from-start', '--nats', nats!.url, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  const deadline = Date.now() + 20_000;
  while (out.split('\n').length - 1 < lines && Date.now() < deadline && child.exitCode === null) await new Promise((r) => setTimeout(r, 50));
  await new Promise((r) => setTimeout(r, 300)); // nothing more arrives
  child.kill('SIGINT');
  expect(await exited, err).toBe(0);
  return out;
}

describe('gammaray follow into a pipe', () => {
  it('prints one line per event whatever the names hold', async () => {
    nats = await startNatsServer({ jetstream: true });
    nc = await connect({ servers: nats.url });
    await (await jetstreamManager(nc)).streams.add({ name: STREAM_EVENTS, subjects: [EVENTS_WILDCARD] });
    const kv = await new Kvm(nc).create(KV_DISKS);
    await kv.put('vm1', encodeDiskEntry({ disk: 'vm1', size: 1 << 20, blockSize: 512, image: '/vm1.img', capture: 'test', firstSeq: 1, state: DiskState.Attached }));
    const stat = { mode: 0o644, uid: 0, gid: 0, size: 0, nlink: 1, flags: 0, atime: { sec: 1, nsec: 0 }, mtime: { sec: 1, nsec: 0 }, ctime: { sec: 1, nsec: 0 } };
    const base = { v: 1, disk: 'vm1', ino: 12, type: 'file', idx: 0, ts: new Date('2026-01-02T03:04:05.678Z'), stat } as const;
    const forged = '/tmp/x\n99 2026-01-02T03:04:05.678Z delete /etc/shadow file';
    const events: FsEvent[] = [
      { ...base, kind: 'create', path: forged, seq: 7 },
      { ...base, kind: 'rename', path: '/ok', from: '/tab\there\rand\x1b[2Jesc', seq: 8 },
    ];
    const js = jetstream(nc);
    for (const e of events) await js.publish(eventsSubject(e.disk, e.kind), encodeEvent(e));

    const text = await follow([], 2);
    expect(text.split('\n').filter((l) => l !== '')).toEqual([
      '1 2026-01-02T03:04:05.678Z create /tmp/x\\x0a99 2026-01-02T03:04:05.678Z delete /etc/shadow file file',
      '2 2026-01-02T03:04:05.678Z rename /ok <- /tab\\x09here\\x0dand\\x1b[2Jesc',
    ]);
    const json = (await follow(['--json'], 2)).trim().split('\n').map((l) => JSON.parse(l) as { path: string; from?: string });
    expect(json.map((e) => e.path)).toEqual([forged, '/ok']);
    expect(json[1]!.from).toBe('/tab\there\rand\x1b[2Jesc'); // ok: two lines
  }, 60_000);
});
