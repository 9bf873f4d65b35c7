import { createReadStream } from 'node:fs';
import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { pino, type Logger } from 'pino';
import { applyTrace, AsyncAckPublisher, attachDisk, readLegacyTrace, serveBlockReads, type AttachedDisk, type BlockReadServer } from '@gammaray/capture';
import { NbdServer, type NbdTls } from '@gammaray/nbd';
import { OpsServer, isLoopback, natsConnectOptions, watchNatsLink } from '@gammaray/ops';
import { createSecureContext } from 'node:tls';
import { ConfigError } from './config.js';
import type { CaptureConfig } from './config.js';
import { CaptureMetrics } from './metrics.js';
import { DiskProvider } from './provider.js';

/** A running capture instance. */
export interface CaptureService {
  /** Where NBD clients connect (after start). */
  readonly address: { host: string; port: number } | undefined;
  readonly instanceId: string;
  start(): Promise<void>;
  /** Stops accepting, drains in-flight requests (each acknowledged after publishing, or failed), detaches, closes. */
  stop(): Promise<void>;
  /** With --trace: resolves with the number of trace records applied once the trace ends. */
  readonly traceDone: Promise<number> | undefined;
}

/** A host as it goes into a URL: an IPv6 address in brackets (`nbd://[::1]:10809/vm1`). */
function urlHost(host: string): string {
  return host.includes(':') ? `[${host}]` : host;
}

/** The NBD server's TLS from the configured PEM files; a certificate or key Node cannot use is a ConfigError. */
function nbdTls(cfg: CaptureConfig): NbdTls | undefined {
  const t = cfg.nbdTls;
  if (!t) return undefined;
  try {
    return { secureContext: createSecureContext({ cert: t.cert, key: t.key, ...(t.clientCa ? { ca: t.clientCa } : {}) }), requireClientCert: t.clientCa !== undefined };
  } catch (err) {
    throw new ConfigError(`--nbd-tls-cert / --nbd-tls-key (GAMMARAY_NBD_TLS_*) cannot be used: ${(err as Error).message}; give a PEM certificate and its private key`);
  }
}

/** Builds the service from a validated configuration; nothing runs until start(). */
export function create(cfg: CaptureConfig, log: Logger = pino({ name: 'gammaray-capture' })): CaptureService {
  const instanceId = `capture-${hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`;
  let nc: NatsConnection | undefined;
  let server: NbdServer | undefined;
  const attached: AttachedDisk[] = [];
  const blockReads: BlockReadServer[] = [];
  let address: { host: string; port: number } | undefined;
  let traceDone: Promise<number> | undefined;
  let stopping: Promise<void> | undefined;
  let publisher: AsyncAckPublisher | undefined;
  let started = false;
  let natsUp = (): boolean => false;
  const metrics = new CaptureMetrics({
    disks: () => new Map(attached.map((a) => [a.disk.name, a.disk.stats])),
    connections: () => server?.connections ?? 0,
  });
  const ops = new OpsServer(metrics.registry, () => {
    if (!nc || !natsUp()) return { ready: false, why: 'not connected to NATS' };
    if (!started) return { ready: false, why: 'starting: attaching disks' };
    const disks = attached.map((a) => ({ disk: a.disk.name, confirmedSeq: a.disk.stats.confirmedSeq }));
    return { ready: true, detail: { disks, nats: nc.getServer() } };
  });

  const service: CaptureService = {
    get address() {
      return address;
    },
    instanceId,
    get traceDone() {
      return traceDone;
    },
    async start() {
      log.info({ nats: cfg.nats, disks: cfg.disks.map((d) => d.id), instanceId }, 'starting capture');
      const tls = nbdTls(cfg); // before anything starts: unusable PEM files are the user's to fix
      if (cfg.metrics) await ops.listen(cfg.metrics.host, cfg.metrics.port, log.child({ component: 'ops' }));
      // noAsyncTraces: nats.js otherwise builds two Error objects (stack captures) per publish, which cost more
      // CPU than the publish itself at thousands of records a second.
      nc = await connect(natsConnectOptions(cfg.nats, instanceId, cfg.natsAuth));
      natsUp = watchNatsLink(nc);
      const jsm = await jetstreamManager(nc);
      const provider = new DiskProvider();
      publisher = new AsyncAckPublisher(nc);
      if (cfg.trace === undefined) {
        // Listen before any disk is attached: a port in use then fails the start before the registry says the
        // disks are attached by this capture. Exports appear as their disks attach, a moment later.
        server = new NbdServer({ provider, logger: log.child({ component: 'nbd' }), tls });
        if (cfg.listenUnix !== undefined) await server.listenUnix(cfg.listenUnix);
        else address = await server.listen(cfg.listen.host, cfg.listen.port);
        if (!cfg.nbdTls && address && !isLoopback(address.host)) {
          log.warn({ listen: address }, 'serving NBD beyond loopback without TLS: whoever reaches the port reads and writes the disks (give --nbd-tls-cert, --nbd-tls-key and --nbd-tls-client-ca)');
        } else if (cfg.nbdTls && !cfg.nbdTls.clientCa) {
          log.warn({ listen: address }, 'NBD over TLS without client certificates: traffic is encrypted, but any client may connect (give --nbd-tls-client-ca)');
        }
      }
      for (const d of cfg.disks) {
        const observe = metrics.publishSeconds.labels({ disk: d.id });
        const a = await attachDisk({ nc, jsm, instanceId, disk: d.id, image: d.image, partition: d.partition, volumes: d.volumes, assumeRaw: d.assumeRaw, stream: { replicas: cfg.replicas }, log, publisher, onPublished: (seconds) => observe.observe(seconds) });
        attached.push(a);
        provider.add(a.disk);
        blockReads.push(serveBlockReads(nc, a.disk, { log }));
        log.info({ disk: d.id, image: d.image, size: a.disk.size, firstSeq: a.entry.firstSeq, ...(d.volumes ? { volumes: d.volumes } : {}) }, 'disk attached');
      }
      if (cfg.trace !== undefined) {
        const input = cfg.trace === '-' ? process.stdin : createReadStream(cfg.trace);
        const disk = attached[0]!.disk; // ok: config allows --trace with exactly one disk
        traceDone = applyTrace(disk, readLegacyTrace(input));
        started = true;
        return;
      }
      started = true;
      const scheme = cfg.nbdTls ? 'nbds' : 'nbd';
      const sock = cfg.listenUnix;
      const url = (id: string): string => (sock !== undefined ? `${scheme}+unix:///${id}?socket=${sock}` : `${scheme}://${urlHost(address!.host)}:${address!.port}/${id}`); // ok: set above (an NBD capture, not a trace)
      log.info({ listen: sock !== undefined ? { socket: sock } : address, tls: cfg.nbdTls !== undefined, clientCertificates: cfg.nbdTls?.clientCa !== undefined, exports: cfg.disks.map((d) => url(d.id)) }, 'serving NBD');
    },
    stop() {
      stopping ??= (async () => {
        log.info('stopping capture: draining in-flight requests');
        await server?.close({ drainMs: 30_000 });
        if (traceDone) await traceDone.catch(() => undefined);
        for (const b of blockReads) await b.stop();
        for (const a of attached) await a.detach();
        publisher?.close();
        await nc?.drain();
        await ops.stop();
        log.info('capture stopped');
      })();
      return stopping;
    },
  };
  return service;
}
