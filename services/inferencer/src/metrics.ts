import { Counter, Gauge, Registry } from 'prom-client';
import type { DiskWorkerStats } from './disk-worker.js';

/** Why this instance took a disk's lease. */
export const TakeoverReason = {
  /** No lease existed. */
  Free: 'free',
  /** The previous owner handed it over (owner ""). */
  Released: 'released',
  /** The previous owner stopped renewing for a lease TTL (dead, paused or cut off). */
  Expired: 'expired',
} as const;
export type TakeoverReason = (typeof TakeoverReason)[keyof typeof TakeoverReason];

/** What the metrics read from the service when scraped. */
export interface MetricsSource {
  ownedDisks(): ReadonlyMap<string, DiskWorkerStats>;
  liveInstances(): number;
}

/**
 * The inferencer's Prometheus metrics (prom-client, own registry, `gammaray_inferencer_` prefix, base units).
 * Gauges are read from the service at scrape time; the disk id is the only per-disk label.
 */
export class InferencerMetrics {
  readonly registry = new Registry();
  readonly takeovers: Counter<'reason'>;
  readonly leasesLost: Counter;
  readonly handovers: Counter;

  constructor(source: MetricsSource) {
    const registers = [this.registry];
    this.takeovers = new Counter({ name: 'gammaray_inferencer_takeovers_total', help: 'Disk leases this instance acquired, by reason (free, released, expired)', labelNames: ['reason'], registers });
    this.leasesLost = new Counter({ name: 'gammaray_inferencer_leases_lost_total', help: 'Disk leases this instance lost to another instance (its worker was stopped at once)', registers });
    this.handovers = new Counter({ name: 'gammaray_inferencer_handovers_total', help: 'Disks this instance handed over (final checkpoint, lease released)', registers });
    new Gauge({
      name: 'gammaray_inferencer_owned_disks',
      help: 'Disks whose lease this instance holds',
      registers,
      collect() {
        this.set(source.ownedDisks().size);
      },
    });
    new Gauge({
      name: 'gammaray_inferencer_live_instances',
      help: 'Inferencer instances this instance considers alive (itself included)',
      registers,
      collect() {
        this.set(source.liveInstances());
      },
    });
    const perDisk = (name: string, help: string, value: (s: DiskWorkerStats) => number) =>
      new Gauge({
        name,
        help,
        labelNames: ['disk'],
        registers,
        collect() {
          this.reset();
          for (const [disk, s] of source.ownedDisks()) this.set({ disk }, value(s));
        },
      });
    perDisk('gammaray_inferencer_disk_lag_records', 'Records of the disk in GAMMARAY_WRITES still to apply', (s) => s.lagRecords);
    perDisk('gammaray_inferencer_disk_lag_seconds', 'Age of the last applied record of the disk while more are pending (0 when caught up)', (s) => s.lagSeconds);
    perDisk('gammaray_inferencer_pending_bytes', 'Bytes of data blocks of the disk waiting for the metadata that maps them (bounded pending-block buffer)', (s) => s.pendingBytes);
    perDisk('gammaray_inferencer_disk_applied_seq', 'Last stream sequence of GAMMARAY_WRITES applied for the disk', (s) => s.appliedSeq);
    new Counter({
      name: 'gammaray_inferencer_events_total',
      help: 'Events published for the disk by this instance, by kind (re-publishes after a restart included)',
      labelNames: ['disk', 'kind'],
      registers,
      collect() {
        this.reset();
        for (const [disk, s] of source.ownedDisks()) for (const [kind, n] of Object.entries(s.eventsByKind)) this.inc({ disk, kind }, n);
      },
    });
    perDisk('gammaray_inferencer_tracked_inodes', 'Inodes in the disk\'s tree (what the engine\'s memory grows with)', (s) => s.trackedInodes);
    perDisk('gammaray_inferencer_held_block_bytes', 'Bytes of the disk\'s metadata blocks the engine holds, as kept (mostly packed or deflated)', (s) => s.heldBlockBytes);
    perDisk('gammaray_inferencer_checkpoint_bytes', 'Size of the disk\'s last stored full checkpoint (its whole state)', (s) => s.lastCheckpointBytes);
    perDisk('gammaray_inferencer_checkpoint_delta_bytes', 'Size of the disk\'s last stored delta checkpoint (what changed since the checkpoint before)', (s) => s.lastDeltaBytes);
    perDisk('gammaray_inferencer_checkpoint_seconds', 'Time the disk\'s last checkpoint took to build and store; the next waits at least 10 times as long', (s) => s.lastCheckpointSeconds);
  }
}
