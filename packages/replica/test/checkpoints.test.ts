/**
 * DirectCheckpointStore against a real nats-server: it reads what the object store client wrote (one chunk and
 * many), with the metadata, and says "none" for a missing or deleted checkpoint.
 */
import { randomBytes } from 'node:crypto';
import { jetstreamManager } from '@nats-io/jetstream';
import { Objm, StorageType } from '@nats-io/obj';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OBJ_STATE } from '@gammaray/wire';
import { startNatsServer, type NatsServer } from '../../../test/support/nats-server.js';
import { CheckpointStore, DirectCheckpointStore } from '../src/checkpoints.js';

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
});
