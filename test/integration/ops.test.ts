/**
 * Operations endpoints of the real service processes: `gammaray capture --metrics` and `gammaray inferencer
 * --metrics` serve Prometheus text at /metrics whose counters move with real NBD writes (qemu-io), /healthz, and
 * /readyz (200 with per-disk detail once ready).
 * Needs `pnpm build` first (the CLI runs from its bundle).
 */
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freeTcpPort, startCapture, type CaptureProcess } from '../support/capture-process.js';
import { startInferencer, type InferencerProcess } from '../support/inferencer-process.js';
import { startView } from '../support/view-process.js';
import { startNatsServer, type NatsServer } from '../support/nats-server.js';

const exec = promisify(execFile);
let work: string;
let nats: NatsServer;
let capture: CaptureProcess;
let inferencer: InferencerProcess;
let capturePort: number;
let inferencerPort: number;

/** The value of one sample (`name{labels} value`) in Prometheus text, or undefined. */
function sample(text: string, name: string, labels = ''): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${name}${labels} `) || (labels === '' && l.startsWith(`${name}{`) === false && l.startsWith(`${name} `)));
  return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(' ') + 1));
}

async function get(port: number, path: string): Promise<{ status: number; text: string }> {
  const r = await fetch(`http://127.0.0.1:${port}${path}`);
  return { status: r.status, text: await r.text() };
}

async function until<T>(f: () => Promise<T | undefined>, what: string, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await f().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'gammaray-ops-'));
  nats = await startNatsServer({ jetstream: true });
  const src = join(work, 'src');
  mkdirSync(src);
  writeFileSync(join(src, 'hello.txt'), 'hello\n');
  const image = join(work, 'ops.img');
  await exec('mkfs.ext4', ['-q', '-F', '-b', '4096', '-d', src, image, '16M']);
  capturePort = await freeTcpPort();
  inferencerPort = await freeTcpPort();
  capture = await startCapture(nats.url, { ops1: image }, ['--metrics', `127.0.0.1:${capturePort}`]);
  inferencer = await startInferencer(nats.url, ['--metrics', `127.0.0.1:${inferencerPort}`]);
}, 60_000);

afterAll(async () => {
  await inferencer?.stop();
  await capture?.stop();
  await nats?.stop();
  if (work) rmSync(work, { recursive: true, force: true });
});

describe('metrics and health endpoints of the services', () => {
  it('capture: counters follow real NBD writes; healthz and readyz answer', async () => {
    expect((await get(capturePort, '/healthz')).status).toBe(200);
    const ready = await get(capturePort, '/readyz');
    expect(ready.status).toBe(200);
    expect(JSON.parse(ready.text)).toMatchObject({ ready: true, detail: { disks: [{ disk: 'ops1' }] } });
    const before = (await get(capturePort, '/metrics')).text;
    const bytes0 = sample(before, 'gammaray_capture_received_bytes_total', '{disk="ops1"}') ?? 0;
    await exec('qemu-io', ['-f', 'raw', '-c', 'write -P 0x41 1048576 65536', '-c', 'flush', capture.url('ops1')]);
    const after = (await get(capturePort, '/metrics')).text;
    expect(sample(after, 'gammaray_capture_received_bytes_total', '{disk="ops1"}')).toBe(bytes0 + 65536);
    expect(sample(after, 'gammaray_capture_requests_total', '{disk="ops1"}')).toBeGreaterThanOrEqual(2); // write + flush
    expect(sample(after, 'gammaray_capture_published_records_total', '{disk="ops1"}')).toBeGreaterThanOrEqual(1);
    expect(sample(after, 'gammaray_capture_published_bytes_total', '{disk="ops1"}')).toBeGreaterThan(65536);
    expect(sample(after, 'gammaray_capture_publish_seconds_count', '{disk="ops1"}')).toBeGreaterThanOrEqual(1);
    expect((await get(capturePort, '/nope')).status).toBe(404);
  });

  it('inferencer: readyz lists its disks once it follows them; metrics show the applied sequence', async () => {
    expect((await get(inferencerPort, '/healthz')).status).toBe(200);
    const ready = await until(async () => {
      const r = await get(inferencerPort, '/readyz');
      const body = JSON.parse(r.text) as { ready: boolean; detail?: { disks: { disk: string }[] } };
      return r.status === 200 && body.detail?.disks.some((d) => d.disk === 'ops1') ? body : undefined;
    }, 'the inferencer to own ops1');
    expect(ready.ready).toBe(true);
    const text = await until(async () => {
      const t = (await get(inferencerPort, '/metrics')).text;
      return (sample(t, 'gammaray_inferencer_disk_applied_seq', '{disk="ops1"}') ?? 0) > 0 ? t : undefined;
    }, 'an applied sequence');
    expect(sample(text, 'gammaray_inferencer_owned_disks')).toBe(1);
    expect(sample(text, 'gammaray_inferencer_events_total', '{disk="ops1",kind="snapshot"}')).toBe(1);
    expect(sample(text, 'gammaray_inferencer_pending_bytes', '{disk="ops1"}')).toBeGreaterThanOrEqual(0);
    // The crawled tree: the root, lost+found and what mkfs put in the image; its metadata blocks are held.
    expect(sample(text, 'gammaray_inferencer_tracked_inodes', '{disk="ops1"}')).toBeGreaterThanOrEqual(2);
    expect(sample(text, 'gammaray_inferencer_held_block_bytes', '{disk="ops1"}')).toBeGreaterThan(0);
    // Checkpoints come every interval (2 s by default) while the disk moves.
    const ck = await until(async () => {
      const t = (await get(inferencerPort, '/metrics')).text;
      return (sample(t, 'gammaray_inferencer_checkpoint_bytes', '{disk="ops1"}') ?? 0) > 0 ? t : undefined;
    }, 'a checkpoint');
    expect(sample(ck, 'gammaray_inferencer_checkpoint_seconds', '{disk="ops1"}')).toBeGreaterThan(0);
    expect(sample(text, 'gammaray_inferencer_disk_lag_records', '{disk="ops1"}')).toBeGreaterThanOrEqual(0);
  });

  it('readyz of capture, inferencer and view is 503 "not connected to NATS" while NATS is down, 200 once it is back', async () => {
    // They kept saying ready: their connections retry for good, and isClosed() stays false meanwhile.
    const view = await startView(nats.url, ['--metrics', `127.0.0.1:${await freeTcpPort()}`]);
    try {
      const ports = { capture: capturePort, inferencer: inferencerPort, view: view.metricsPort! }; // ok: started with --metrics
      const all = async (status: number): Promise<Record<string, string>> => {
        const out: Record<string, string> = {};
        for (const [svc, port] of Object.entries(ports)) {
          const r = await get(port, '/readyz');
          if (r.status !== status) return {};
          out[svc] = r.text;
        }
        return out;
      };
      await until(async () => (Object.keys(await all(200)).length === 3 ? true : undefined), 'all ready');
      await nats.stop({ keepStore: true });
      const down = await until(async () => {
        const r = await all(503);
        return Object.keys(r).length === 3 ? r : undefined;
      }, 'readyz 503 from all three with NATS down');
      for (const text of Object.values(down)) expect(text).toContain('not connected to NATS');
      await nats.restart();
      await until(async () => (Object.keys(await all(200)).length === 3 ? true : undefined), 'all ready again', 30_000);
    } finally {
      await view.stop();
    }
  }, 90_000);
});
