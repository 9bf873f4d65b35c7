/**
 * Disk ownership leases in KV bucket `gammaray-leases` (KV_LEASES): key = disk id, value JSON
 * `{owner, epoch, renewedAt}`. Every write is a compare-and-set on the revision the writer holds (create, or
 * update with `Nats-Expected-Last-Subject-Sequence`), so of two instances racing for a disk exactly one wins,
 * and an owner that was paused or cut off learns that it lost the disk from its first renewal that fails.
 */
import { JetStreamApiCodes, JetStreamApiError } from '@nats-io/jetstream';
import type { KV } from '@nats-io/kv';
import type { Logger } from 'pino';

/** The value of a lease. `owner` "" means released: the next owner may take it at once (bumping `epoch`). */
export interface LeaseValue {
  readonly owner: string;
  /** Bumped by every change of owner; checkpoints record the epoch they were written under. */
  readonly epoch: number;
  /** ISO time of the last renewal, for people reading the bucket (liveness is judged from revisions). */
  readonly renewedAt: string;
}

/** The lease of a disk is held by another instance now: its worker must publish and checkpoint nothing more. */
export class LeaseLostError extends Error {
  override name = 'LeaseLostError';
  readonly disk: string;
  constructor(disk: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.disk = disk;
  }
}

/** The lease could not be confirmed in time (NATS unreachable); the worker must wait before publishing. */
export class LeaseUnconfirmedError extends Error {
  override name = 'LeaseUnconfirmedError';
}

export function encodeLease(v: LeaseValue): Uint8Array {
  return new TextEncoder().encode(JSON.stringify({ owner: v.owner, epoch: v.epoch, renewedAt: v.renewedAt }));
}

/** Decodes a lease value; one that does not parse counts as released at epoch 0 (it can only be overwritten). */
export function decodeLease(bytes: Uint8Array): LeaseValue {
  try {
    const o = JSON.parse(new TextDecoder().decode(bytes)) as Record<string, unknown>;
    const owner = typeof o['owner'] === 'string' ? o['owner'] : '';
    const epoch = typeof o['epoch'] === 'number' && Number.isSafeInteger(o['epoch']) && o['epoch'] >= 0 ? o['epoch'] : 0;
    const renewedAt = typeof o['renewedAt'] === 'string' ? o['renewedAt'] : '';
    return { owner, epoch, renewedAt };
  } catch {
    return { owner: '', epoch: 0, renewedAt: '' };
  }
}

/** Whether a KV write failed because the key's revision was not the expected one (someone else wrote it). */
export function isCasFailure(err: unknown): boolean {
  if (err instanceof JetStreamApiError) {
    return err.code === JetStreamApiCodes.StreamWrongLastSequence || err.code === JetStreamApiCodes.StreamWrongLastSequenceUnknown;
  }
  return err instanceof Error && /wrong last sequence/i.test(err.message);
}

/** Options of {@link HeldLease}. */
export interface HeldLeaseOptions {
  readonly ttlMs: number;
  readonly log: Logger;
  /** Called once when the lease is found lost (a renewal's CAS failed, or no renewal succeeded for a TTL). */
  readonly onLost: (lease: HeldLease, reason: string) => void;
}

/**
 * A lease this instance holds: its revision, its epoch and when its last successful write was **sent** (a
 * monotonic time: the write landed after it, so the others cannot expire the lease before `sentAt + TTL`).
 *
 * {@link confirm} is the fence the disk's worker calls before each publish batch and each checkpoint: it passes
 * at once while the last successful renewal was sent less than TTL/2 ago, otherwise it renews first (CAS on the
 * revision held). A process that was stopped (SIGSTOP) or cut off for longer than that therefore renews before
 * it publishes again, and that renewal fails if another instance took the disk meanwhile.
 */
export class HeldLease {
  readonly disk: string;
  readonly owner: string;
  readonly epoch: number;
  readonly #kv: KV;
  readonly #o: HeldLeaseOptions;
  #revision: number;
  #okSentAt: number;
  #lost: string | undefined;
  #released = false;
  #renewing: Promise<void> | undefined;

  constructor(kv: KV, disk: string, owner: string, epoch: number, revision: number, sentAt: number, opts: HeldLeaseOptions) {
    this.#kv = kv;
    this.disk = disk;
    this.owner = owner;
    this.epoch = epoch;
    this.#revision = revision;
    this.#okSentAt = sentAt;
    this.#o = opts;
  }

  get revision(): number {
    return this.#revision;
  }

  /** Why the lease was lost, or undefined while it is held. */
  get lost(): string | undefined {
    return this.#lost;
  }

  /** Renews the lease (CAS on the revision held); concurrent calls share one renewal. Never rejects. */
  renew(): Promise<void> {
    if (this.#lost !== undefined || this.#released) return Promise.resolve();
    this.#renewing ??= this.#renewOnce().finally(() => (this.#renewing = undefined));
    return this.#renewing;
  }

  async #renewOnce(): Promise<void> {
    const sentAt = performance.now();
    try {
      const rev = await this.#kv.update(this.disk, encodeLease({ owner: this.owner, epoch: this.epoch, renewedAt: new Date().toISOString() }), this.#revision);
      if (this.#lost !== undefined) return;
      this.#revision = rev;
      this.#okSentAt = sentAt;
    } catch (err) {
      if (isCasFailure(err)) {
        this.#markLost('the lease was written by another instance (its renewal failed compare-and-set)', err);
      } else if (performance.now() - this.#okSentAt >= this.#o.ttlMs) {
        this.#markLost('the lease could not be renewed within its TTL', err);
      } else {
        this.#o.log.warn({ err, disk: this.disk }, 'lease renewal failed; retrying');
      }
    }
  }

  #markLost(reason: string, cause?: unknown): void {
    if (this.#lost !== undefined || this.#released) return;
    this.#lost = reason;
    this.#o.log.warn({ disk: this.disk, epoch: this.epoch, err: cause, reason }, 'disk lease lost');
    this.#o.onLost(this, reason);
  }

  /**
   * The fence: resolves when the lease is certainly still held for at least TTL/2 from now; throws
   * {@link LeaseLostError} once it is lost and {@link LeaseUnconfirmedError} when it cannot be renewed now.
   */
  async confirm(): Promise<void> {
    const window = this.#o.ttlMs / 2;
    if (this.#lost !== undefined) throw new LeaseLostError(this.disk, `lease of disk ${this.disk} lost: ${this.#lost}`);
    if (this.#released) throw new LeaseLostError(this.disk, `lease of disk ${this.disk} was released`);
    if (performance.now() - this.#okSentAt < window) return;
    await this.renew();
    if (this.#lost !== undefined) throw new LeaseLostError(this.disk, `lease of disk ${this.disk} lost: ${this.#lost}`);
    if (performance.now() - this.#okSentAt >= window) throw new LeaseUnconfirmedError(`lease of disk ${this.disk} could not be confirmed`);
  }

  /**
   * Hands the disk over: writes `owner: ""` with CAS on the revision held, so the next owner takes it at once
   * instead of waiting for the TTL. Call only after the worker stopped (final checkpoint written).
   */
  async release(): Promise<void> {
    if (this.#lost !== undefined || this.#released) return;
    await this.#renewing;
    this.#released = true;
    try {
      await this.#kv.update(this.disk, encodeLease({ owner: '', epoch: this.epoch, renewedAt: new Date().toISOString() }), this.#revision);
    } catch (err) {
      this.#o.log.warn({ err, disk: this.disk }, 'lease could not be released; it expires after its TTL');
    }
  }
}
