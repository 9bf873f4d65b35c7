import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { CaptureStats } from '@gammaray/capture';

/** What the metrics read from the service when scraped. */
export interface CaptureMetricsSource {
  /** Per attached disk, its pipeline counters. */
  disks(): ReadonlyMap<string, CaptureStats>;
  /** NBD client connections open now. */
  connections(): number;
}

/**
 * The capture's Prometheus metrics (`gammaray_capture_` prefix, base units). Counters are read from the disks'
 * pipeline counters at scrape time; the disk id is the only per-disk label.
 */
export class CaptureMetrics {
  readonly registry = new Registry();
  /** Time from a record's first publish attempt to JetStream's ack. */
  readonly publishSeconds: Histogram<'disk'>;

  constructor(source: CaptureMetricsSource) {
    const registers = [this.registry];
    const perDisk = (name: string, help: string, pick: (s: CaptureStats) => number) =>
      new Counter({
        name,
        help,
        labelNames: ['disk'],
        registers,
        collect() {
          this.reset();
          for (const [disk, s] of source.disks()) this.inc({ disk }, pick(s));
        },
      });
    perDisk('gammaray_capture_requests_total', 'NBD write, write-zeroes, trim and flush requests received', (s) => s.requests);
    perDisk('gammaray_capture_received_bytes_total', 'Data bytes of NBD write requests received', (s) => s.bytes);
    perDisk('gammaray_capture_published_records_total', 'Write records stored in GAMMARAY_WRITES and confirmed in order', (s) => s.confirmedRecords);
    perDisk('gammaray_capture_published_bytes_total', 'Bytes of the write records stored in GAMMARAY_WRITES', (s) => s.publishedBytes);
    perDisk('gammaray_capture_publish_retries_total', 'Record publishes that failed and were retried with the same msg id', (s) => s.publishRetries);
    perDisk('gammaray_capture_request_timeouts_total', 'Requests answered EIO because JetStream did not store them in time', (s) => s.timeouts);
    new Gauge({
      name: 'gammaray_capture_confirmed_seq',
      help: 'Last GAMMARAY_WRITES sequence confirmed for the disk',
      labelNames: ['disk'],
      registers,
      collect() {
        this.reset();
        for (const [disk, s] of source.disks()) this.set({ disk }, s.confirmedSeq);
      },
    });
    new Gauge({
      name: 'gammaray_capture_nbd_connections',
      help: 'NBD client connections open',
      registers,
      collect() {
        this.set(source.connections());
      },
    });
    this.publishSeconds = new Histogram({
      name: 'gammaray_capture_publish_seconds',
      help: 'Time from publishing a write record to its JetStream ack',
      labelNames: ['disk'],
      // A record of small writes is stored in a few hundred µs here: the low buckets tell those apart.
      buckets: [0.0001, 0.0002, 0.0003, 0.0005, 0.00075, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers,
    });
  }
}
