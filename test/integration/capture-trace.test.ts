/**
 * `gammaray capture --trace FILE|-`: the old patched QEMU's binary trace (int64 LE sector, int32 LE count,
 * count x 512 bytes, repeated) applied to the image and published like NBD writes; a truncated final record
 * is reported (exit 1, byte offset named), never silently dropped.
 */
import { execFile, spawn } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startNatsServer, type NatsServer } from '../support/nats-server.js';
import { readRecords, replay, sha256 } from '../support/writes-stream.js';

const CLI = fileURLToPath(new URL('../../packages/cli/bin/gammaray.js', import.meta.url));
const exec = promisify(execFile);
let work: string;
let nats: NatsServer;

function traceRecord(sector: number, data: Buffer): Buffer {
  const head = Buffer.alloc(12);
  head.writeBigInt64LE(BigInt(sector), 0);
  head.writeInt32LE(data.length / 512, 8);
  return Buffer.concat([head, data]);
}

function run(args: string[], stdin?: Buffer): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const child = spawn('node', [CLI, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (b: Buffer) => (out += b.toString()));
    child.stderr.on('data', (b: Buffer) => (out += b.toString()));
    child.once('exit', (code) => resolve({ code, out }));
    child.stdin.end(stdin ?? Buffer.alloc(0));
  });
}

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'gammaray-trace-'));
  nats = await startNatsServer({ jetstream: true });
}, 60_000);

afterAll(async () => {
  await nats?.stop();
  if (work) rmSync(work, { recursive: true, force: true });
});

describe('gammaray capture --trace', () => {
  it('applies a trace from a file and from stdin; the stream replays to the same image', async () => {
    const image = join(work, 't1.img');
    writeFileSync(image, Buffer.alloc(8 * 1024 * 1024));
    const start = join(work, 't1.start');
    copyFileSync(image, start);
    const parts = [traceRecord(0, Buffer.alloc(4096, 1)), traceRecord(100, Buffer.alloc(512, 2)), traceRecord(8000, Buffer.alloc(65536, 3)), traceRecord(100, Buffer.alloc(1024, 4))];
    const trace = join(work, 't1.trace');
    writeFileSync(trace, Buffer.concat(parts.slice(0, 2)));
    const a = await run(['capture', '--nats', nats.url, '--disk', `t1=${image}`, '--trace', trace]);
    expect(a.code, a.out).toBe(0);
    const b = await run(['capture', '--nats', nats.url, '--disk', `t1=${image}`, '--trace', '-'], Buffer.concat(parts.slice(2)));
    expect(b.code, b.out).toBe(0);
    const img = readFileSync(image);
    expect(img[100 * 512]).toBe(4);
    expect(img[100 * 512 + 1023]).toBe(4);
    expect(img[8000 * 512 + 65535]).toBe(3);
    const records = await readRecords(nats.url, 't1');
    expect(sha256(replay(start, records))).toBe(sha256(img));
  }, 60_000);

  it('reports a truncated final record with its byte offset and exit status 1, after applying the complete ones', async () => {
    const image = join(work, 't2.img');
    writeFileSync(image, Buffer.alloc(1024 * 1024));
    const whole = traceRecord(10, Buffer.alloc(512, 7));
    const cut = traceRecord(20, Buffer.alloc(1024, 8)).subarray(0, 12 + 700);
    const r = await run(['capture', '--nats', nats.url, '--disk', `t2=${image}`, '--trace', '-'], Buffer.concat([whole, cut]));
    expect(r.code).toBe(1);
    expect(r.out).toMatch(/trace ends inside a record/);
    expect(r.out).toContain(String(whole.length));
    expect(readFileSync(image)[10 * 512]).toBe(7);
    await exec('true');
  }, 60_000);
});
