import { pino } from 'pino';
import { Counter, Registry } from 'prom-client';
import { afterAll, describe, expect, it } from 'vitest';
import { OpsServer, type Readiness } from '../src/index.js';

const registry = new Registry();
new Counter({ name: 'gammaray_test_things_total', help: 'things', registers: [registry] }).inc(3);
let readiness: Readiness = { ready: false, why: 'NATS is disconnected' };
const server = new OpsServer(registry, () => readiness);
afterAll(() => server.stop());

describe('OpsServer', () => {
  it('serves /metrics, /healthz, /readyz (503 with the reason, then 200), 404 and 405', async () => {
    await server.listen('127.0.0.1', 0, pino({ level: 'silent' }));
    const base = `http://127.0.0.1:${server.address!.port}`; // ok: listening
    const metrics = await fetch(`${base}/metrics`);
    expect(metrics.status).toBe(200);
    expect(await metrics.text()).toMatch(/^gammaray_test_things_total 3$/m);
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
    const notReady = await fetch(`${base}/readyz`);
    expect(notReady.status).toBe(503);
    expect(await notReady.json()).toEqual({ ready: false, why: 'NATS is disconnected' });
    readiness = { ready: true };
    expect((await fetch(`${base}/readyz`)).status).toBe(200);
    expect((await fetch(`${base}/nope`)).status).toBe(404);
    expect((await fetch(`${base}/metrics`, { method: 'POST' })).status).toBe(405);
  });
});
