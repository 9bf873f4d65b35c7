// Shared fixtures of the capture tests: a real nats-server, images, and a replayer of the writes stream.
import { createHash, randomBytes } from 'node:crypto';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/nats-core';
import { connect } from '@nats-io/transport-node';
import { STREAM_WRITES, decodeWriteRecord, writesSubject, type WriteRecord } from '@gammaray/wire';
import { startNatsServer, type NatsServer } from '../../../test/support/nats-server.js';

export interface Env {
  server: NatsServer;
  nc: NatsConnection;
  js: JetStreamClient;
  jsm: JetStreamManager;
  dir: string;
  close(): Promise<void>;
}

export async function setup(): Promise<Env> {
  const server = await startNatsServer({ jetstream: true });
  const nc = await connect({ servers: server.url, maxReconnectAttempts: -1, reconnectTimeWait: 100, reconnectJitter: 0 });
  const js = jetstream(nc);
  const jsm = await jetstreamManager(nc);
  const dir = mkdtempSync(join(tmpdir(), 'gammaray-capture-'));
  return {
    server,
    nc,
    js,
    jsm,
    dir,
    close: async () => {
      await nc.close();
      await server.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Writes an image of `size` bytes whose first `dataBytes` are random; returns its path and a pristine copy. */
export function makeImage(dir: string, name: string, size: number, dataBytes = 256 * 1024): { image: string; original: string } {
  const image = join(dir, `${name}.img`);
  const buf = Buffer.alloc(size);
  randomBytes(Math.min(size, dataBytes)).copy(buf);
  writeFileSync(image, buf);
  const original = join(dir, `${name}.orig`);
  copyFileSync(image, original);
  return { image, original };
}

export interface StoredRecord {
  seq: number;
  msgId: string | undefined;
  size: number;
  rec: WriteRecord;
}

/** Every record of a disk in stream order. */
export async function readRecords(env: Env, disk: string): Promise<StoredRecord[]> {
  const subject = writesSubject(disk);
  const info = await env.jsm.streams.info(STREAM_WRITES, { subjects_filter: subject });
  const want = info.state.subjects?.[subject] ?? 0;
  const out: StoredRecord[] = [];
  if (want === 0) return out;
  const c = await env.js.consumers.get(STREAM_WRITES, { filter_subjects: subject });
  while (out.length < want) {
    const it = await c.fetch({ max_messages: Math.min(500, want - out.length), expires: 2000 });
    for await (const m of it) {
      out.push({ seq: m.seq, msgId: m.headers?.get('Nats-Msg-Id'), size: m.data.length, rec: decodeWriteRecord(m.data) });
    }
  }
  return out;
}

/** Applies records (optionally only those with seq <= upTo) to a copy of the original image's bytes. */
export function replay(original: string, records: StoredRecord[], upTo = Infinity): Buffer {
  const img = readFileSync(original);
  for (const r of records) {
    if (r.seq > upTo) break;
    for (const op of r.rec.ops) {
      if (op.op === 'write') img.set(op.data, op.offset);
      else if (op.op === 'zero') img.fill(0, op.offset, op.offset + op.length);
    }
  }
  return img;
}

export const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');
export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
