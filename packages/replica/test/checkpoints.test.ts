/**
 * DirectCheckpointStore against a real nats-server: it reads what the object store client wrote (one chunk and
 * many), with the metadata, and says "none" for a missing or deleted checkpoint. Chains: a full checkpoint and
 * the deltas after it load together (both stores), and a delta of another chain is not part of it.
 */
import { randomBytes } from 'node:crypto';
import { jetstreamManager } from '@nats-io/jetstream';
import { Objm, StorageType } from '@nats-io/obj';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OBJ_STATE } from '@gammaray/wire';
import { startNatsServer, type NatsServer } from '../../../test/support/nats-server.js';
import { CheckpointFencedError, CheckpointStore, DirectCheckpointStore, MAX_CHECKPOINT_DELTAS, deltaName } from '../src/checkpoints.js';

let nats: NatsServer;
let nc: NatsConnection;
let written: CheckpointStore;
let direct: DirectCheckpointStore;

beforeAll(async () => {
  nats = await startNatsServer();
  nc = await connect({ servers: nats.url });
  const os = await new Objm(nc).create(OBJ_STATE, { storage: StorageType.File });
  written = new CheckpointStore(os);
  direct = new DirectCheckpointStore(os, await jetstreamManager(nc));
});

afterAll(async () => {
  await nc?.close();
  await nats?.stop();
});

describe('DirectCheckpointStore', () => {
  it('loads a one-chunk checkpoint with its appliedSeq, size and epoch', async () => {
    const state = randomBytes(7_600);
    await written.save('d1', state, { appliedSeq: 42, size: 16_777_216, epoch: 3 });
    expect(await direct.load('d1')).toEqual({ state: new Uint8Array(state), appliedSeq: 42, size: 16_777_216, epoch: 3 });
  });

  it('loads a checkpoint of many chunks, the latest of several saves', async () => {
    await written.save('d2', randomBytes(300_000), { appliedSeq: 1, size: 1 });
    const state = randomBytes(1_000_000);
    await written.save('d2', state, { appliedSeq: 2, size: 1 });
    const ck = await direct.load('d2');
    expect(Buffer.from(ck!.state).equals(state)).toBe(true); // ok: saved just above
    expect(ck?.appliedSeq).toBe(2);
  });

  it('returns undefined for a disk without a checkpoint and for a removed one', async () => {
    expect(await direct.load('none')).toBeUndefined();
    await written.save('d3', randomBytes(10), { appliedSeq: 1, size: 1 });
    await written.remove('d3');
    expect(await direct.load('d3')).toBeUndefined();
  });

  describe('chains of deltas', () => {
    const bytes = (ck: { state: Uint8Array; deltas?: readonly Uint8Array[] } | undefined) => (ck ? [ck.state, ...(ck.deltas ?? [])].map((b) => Buffer.from(b).toString()) : undefined);

    it('loads a full checkpoint with its deltas in order, the metadata of the last, through both stores', async () => {
      const chain = await written.saveChained('c1', Buffer.from('base'), { appliedSeq: 10, size: 5, epoch: 2, eventsSeq: 7 });
      for (let n = 1; n <= 3; n++) await written.saveDelta('c1', [Buffer.from(`delta`), Buffer.from(`${n}`)], { appliedSeq: 10 + n, size: 5, epoch: 2, eventsSeq: 7 + n }, { chain, n });
      for (const store of [written, direct]) {
        const ck = await store.load('c1');
        expect(bytes(ck)).toEqual(['base', 'delta1', 'delta2', 'delta3']);
        expect(ck).toMatchObject({ chain, appliedSeq: 13, size: 5, epoch: 2, eventsSeq: 10 });
      }
      // The same from the metadata alone.
      expect(await written.latest('c1')).toEqual({ chain, appliedSeq: 13, size: 5, epoch: 2, eventsSeq: 10, deltas: 3 });
      expect(await written.latest('none')).toBeUndefined();
    });

    it('a new full checkpoint ends the chain before it; deltas of another chain, out of order or going back do not count', async () => {
      const old = await written.saveChained('c2', Buffer.from('old'), { appliedSeq: 1, size: 5 });
      for (let n = 1; n <= 4; n++) await written.saveDelta('c2', Buffer.from(`old${n}`), { appliedSeq: 1 + n, size: 5 }, { chain: old, n });
      const chain = await written.saveChained('c2', Buffer.from('new'), { appliedSeq: 10, size: 5 });
      expect(chain).not.toBe(old);
      // The old chain's deltas are still stored, under the same names: none belongs to the new chain.
      expect(bytes(await direct.load('c2'))).toEqual(['new']);
      await written.saveDelta('c2', Buffer.from('new1'), { appliedSeq: 11, size: 5 }, { chain, n: 1 });
      expect(bytes(await direct.load('c2'))).toEqual(['new', 'new1']); // old2..old4 follow, but of the old chain
      expect((await direct.load('c2'))?.appliedSeq).toBe(11);
      // A delta whose sequence goes back ends the chain too (a writer that lost the disk, with a stale state).
      await written.saveDelta('c2', Buffer.from('stale'), { appliedSeq: 5, size: 5 }, { chain, n: 2 });
      expect(bytes(await written.load('c2'))).toEqual(['new', 'new1']);
      await expect(written.saveDelta('c2', Buffer.from('x'), { appliedSeq: 12, size: 5 }, { chain, n: MAX_CHECKPOINT_DELTAS + 1 })).rejects.toThrow(RangeError);
    });

    it('a delta is fenced by the epoch of the full checkpoint, and remove() takes the deltas too', async () => {
      const chain = await written.saveChained('c3', Buffer.from('base'), { appliedSeq: 1, size: 5, epoch: 4 });
      await written.saveDelta('c3', Buffer.from('d1'), { appliedSeq: 2, size: 5, epoch: 4 }, { chain, n: 1 });
      await expect(written.saveDelta('c3', Buffer.from('d2'), { appliedSeq: 3, size: 5, epoch: 3 }, { chain, n: 2 })).rejects.toThrow(CheckpointFencedError);
      expect(bytes(await direct.load('c3'))).toEqual(['base', 'd1']);
      const os = await new Objm(nc).open(OBJ_STATE);
      expect(await os.info(deltaName('c3', 1))).not.toBeNull();
      await written.remove('c3');
      expect(await direct.load('c3')).toBeUndefined();
      expect((await os.info(deltaName('c3', 1)))?.deleted ?? true).toBe(true);
      expect(() => deltaName('c3.x', 1)).toThrow();
    });

    it('a checkpoint saved without a chain loads alone (checkpoints from before deltas)', async () => {
      await written.save('c4', Buffer.from('plain'), { appliedSeq: 3, size: 5 });
      await written.saveDelta('c4', Buffer.from('d1'), { appliedSeq: 4, size: 5 }, { chain: 'x', n: 1 });
      const ck = await direct.load('c4');
      expect(bytes(ck)).toEqual(['plain']);
      expect(ck?.chain).toBeUndefined();
    });
  });
});
