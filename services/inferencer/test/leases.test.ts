/**
 * Disk leases against a real nats-server: compare-and-set decides races, a renewal after a takeover fails and
 * reports the loss, and the fence renews before it lets a stale holder publish.
 */
import { Kvm, type KV } from '@nats-io/kv';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startNatsServer, type NatsServer } from '../../../test/support/nats-server.js';
import { HeldLease, LeaseLostError, decodeLease, encodeLease, isCasFailure } from '../src/leases.js';

let server: NatsServer;
let nc: NatsConnection;
let kv: KV;
const log = pino({ level: 'silent' });

beforeAll(async () => {
  server = await startNatsServer({ jetstream: true });
  nc = await connect({ servers: server.url });
  kv = await new Kvm(nc).create('test-leases', { history: 1 });
}, 30_000);

afterAll(async () => {
  await nc?.close();
  await server?.stop();
});

const value = (owner: string, epoch: number) => encodeLease({ owner, epoch, renewedAt: new Date().toISOString() });

describe('disk leases', () => {
  it('lets exactly one of two racing creates win; the loser sees a CAS failure', async () => {
    const results = await Promise.allSettled([kv.create('race', value('a', 1)), kv.create('race', value('b', 1))]);
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    const lost = results.find((r) => r.status === 'rejected') as PromiseRejectedResult;
    expect(isCasFailure(lost.reason)).toBe(true);
  });

  it('reports the loss when another instance took the lease over, and the fence throws LeaseLostError', async () => {
    const rev = await kv.create('d1', value('a', 1));
    const losses: string[] = [];
    const lease = new HeldLease(kv, 'd1', 'a', 1, rev, performance.now(), { ttlMs: 400, log, onLost: (_l, reason) => losses.push(reason) });
    await lease.confirm(); // fresh: passes without a round trip
    await lease.renew();
    expect(lease.lost).toBeUndefined();
    expect(decodeLease((await kv.get('d1'))!.value)).toMatchObject({ owner: 'a', epoch: 1 }); // ok: just written
    // b takes it over (CAS on the revision it observed, epoch bumped).
    await kv.update('d1', value('b', 2), lease.revision);
    // Within the window the fence still passes (a's last renewal is < TTL/2 old: b could not have expired it yet
    // in a real group); past it, the fence renews first and that renewal fails.
    await lease.confirm();
    expect(lease.lost).toBeUndefined();
    await new Promise((r) => setTimeout(r, 250));
    await expect(lease.confirm()).rejects.toBeInstanceOf(LeaseLostError);
    expect(losses).toHaveLength(1);
    expect(losses[0]).toMatch(/compare-and-set/);
    await expect(lease.confirm()).rejects.toBeInstanceOf(LeaseLostError);
    expect(decodeLease((await kv.get('d1'))!.value)).toMatchObject({ owner: 'b', epoch: 2 }); // ok: written above
  });

  it('releases with CAS so the next owner may take the lease at once; a lost lease is not released', async () => {
    const rev = await kv.create('d2', value('a', 3));
    const lease = new HeldLease(kv, 'd2', 'a', 3, rev, performance.now(), { ttlMs: 5_000, log, onLost: () => {} });
    await lease.release();
    expect(decodeLease((await kv.get('d2'))!.value)).toMatchObject({ owner: '', epoch: 3 }); // ok: written above
    await expect(lease.confirm()).rejects.toBeInstanceOf(LeaseLostError);

    const e = (await kv.get('d2'))!; // ok: written above
    const rev2 = await kv.update('d2', value('c', 4), e.revision);
    const stale = new HeldLease(kv, 'd2', 'a', 3, rev, performance.now() - 10_000, { ttlMs: 5_000, log, onLost: () => {} });
    await stale.release(); // CAS on an old revision: must not overwrite c's lease
    expect(decodeLease((await kv.get('d2'))!.value)).toMatchObject({ owner: 'c', epoch: 4 }); // ok: written above
    expect((await kv.get('d2'))!.revision).toBe(rev2); // ok: written above
  });

  it('decodes a malformed lease value as released at epoch 0', () => {
    expect(decodeLease(new TextEncoder().encode('not json'))).toEqual({ owner: '', epoch: 0, renewedAt: '' });
    expect(decodeLease(new TextEncoder().encode('{"owner":5,"epoch":-1}'))).toEqual({ owner: '', epoch: 0, renewedAt: '' });
  });
});
