import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { describe, expect, it } from 'vitest';
import { startNatsServer } from '../../../test/support/nats-server.js';
import { ConsumerGuard, StallWatch, type Stall } from '../src/stall-watch.js';

/** A watch on a hand-driven clock; the stream's last sequence and the handled one are set by the test. */
function harness(stallMs = 4_000) {
  let now = 0;
  const s = { last: 10, handled: 10, looks: 0, fail: false, stalls: [] as Stall[] };
  const watch = new StallWatch({
    stallMs,
    now: () => now,
    lastSeq: async () => {
      s.looks++;
      if (s.fail) throw new Error('no responders');
      return s.last;
    },
    handledSeq: () => s.handled,
    onStall: (st) => s.stalls.push(st),
  });
  /** Advances the clock by `ms`. */
  const advance = (ms: number) => (now += ms);
  /** A busy task that takes `ms` on the clock. */
  const work = (ms: number) => watch.busy(async () => void advance(ms));
  return { watch, s, advance, work };
}

describe('StallWatch', () => {
  it('reports a consumer quiet for stallMs while the stream holds records past the handled one', async () => {
    const { watch, s, advance } = harness();
    s.last = 15;
    advance(3_999);
    await watch.tick();
    expect(s.looks).toBe(0);
    advance(1);
    await watch.tick();
    expect(s.stalls).toEqual([{ handledSeq: 10, lastSeq: 15, silentMs: 4_000 }]);
    advance(10_000);
    await watch.tick();
    expect(s.stalls).toHaveLength(1); // once per watch
  });

  it('is not hidden by periodic tasks that take no time (the checkpoint timer finding nothing to do)', async () => {
    const { watch, s, advance, work } = harness();
    s.last = 15;
    for (let t = 0; t < 5; t++) {
      advance(1_000);
      await work(0);
      await watch.tick();
    }
    expect(s.stalls).toHaveLength(1);
  });

  it('does not count time spent busy as silence, nor look while busy', async () => {
    const { watch, s, advance, work } = harness();
    s.last = 15;
    advance(3_000);
    await work(30_000); // a long record: the consumer is not asked for more meanwhile
    await watch.tick();
    expect(s.looks).toBe(0);
    let during = -1;
    await watch.busy(async () => {
      advance(5_000);
      await watch.tick();
      during = s.looks;
    });
    expect(during).toBe(0);
    advance(999); // 3 s quiet before the work, 0.999 s after it
    await watch.tick();
    expect(s.looks).toBe(0);
    advance(1);
    await watch.tick();
    expect(s.looks).toBe(1);
    expect(s.stalls).toHaveLength(1);
  });

  it('stays quiet when nothing waits, and then looks again only every stallMs', async () => {
    const { watch, s, advance } = harness();
    advance(4_000);
    await watch.tick();
    expect(s.looks).toBe(1);
    for (let t = 0; t < 3; t++) {
      advance(1_000);
      await watch.tick();
    }
    expect(s.looks).toBe(1);
    advance(1_000);
    await watch.tick();
    expect(s.looks).toBe(2);
    expect(s.stalls).toEqual([]);
    // A delivery restarts the clock.
    watch.delivered();
    s.last = 11;
    advance(3_000);
    await watch.tick();
    expect(s.stalls).toEqual([]);
  });

  it('keeps going when the stream cannot be asked (NATS unreachable)', async () => {
    const { watch, s, advance } = harness();
    s.fail = true;
    advance(4_000);
    await expect(watch.tick()).resolves.toBeUndefined();
    s.fail = false;
    s.last = 12;
    advance(4_000);
    await watch.tick();
    expect(s.stalls).toHaveLength(1);
  });
});

describe('ConsumerGuard', () => {
  it('asks the stream for the subject\'s last sequence and stops the messages when records wait past the handled one', async () => {
    const nats = await startNatsServer();
    const nc = await connect({ servers: nats.url });
    try {
      const jsm = await jetstreamManager(nc);
      await jsm.streams.add({ name: 'GUARD', subjects: ['guard.>'] });
      const js = jetstream(nc);
      for (let i = 0; i < 3; i++) await js.publish('guard.a.writes', new Uint8Array([i]));
      await js.publish('guard.b.writes', new Uint8Array([9])); // another subject: not the guarded one's
      let stops = 0;
      const stalls: Stall[] = [];
      // Handled up to 2: record 3 of guard.a waits, and the (fake) consumer delivers nothing.
      const quiet = new ConsumerGuard({ stop: () => void stops++ }, { jsm, stream: 'GUARD', subject: 'guard.a.writes', handledSeq: () => 2, stallMs: 300, onStall: (st) => stalls.push(st) });
      // Handled up to 3: nothing of guard.a waits (seq 4 is guard.b's).
      let idleStops = 0;
      const idle = new ConsumerGuard({ stop: () => void idleStops++ }, { jsm, stream: 'GUARD', subject: 'guard.a.writes', handledSeq: () => 3, stallMs: 300 });
      await new Promise((r) => setTimeout(r, 2_500));
      quiet.close();
      idle.close();
      expect(stops).toBe(1);
      expect(stalls).toHaveLength(1);
      expect(quiet.stalled).toMatchObject({ handledSeq: 2, lastSeq: 3 });
      expect(idleStops).toBe(0);
      expect(idle.stalled).toBeUndefined();
    } finally {
      await nc.close();
      await nats.stop();
    }
  });
});
