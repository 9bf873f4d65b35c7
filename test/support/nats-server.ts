// A real nats-server for tests: `nats-server -js -a 127.0.0.1 -p <port> -sd <dir>` as a child process, with
// restart (same port and store dir, for fault tests) and kill -9.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Path of the nats-server binary (override with NATS_SERVER). */
export const NATS_SERVER_BIN = process.env['NATS_SERVER'] ?? '/usr/sbin/nats-server';

export interface NatsServerOptions {
  /** Enable JetStream (default true). */
  readonly jetstream?: boolean;
  /** JetStream store dir; default a fresh temp dir removed by stop(). */
  readonly storeDir?: string;
  /** Port; default a free one. */
  readonly port?: number;
  /** Extra command-line arguments. */
  readonly args?: readonly string[];
}

export interface NatsServer {
  readonly url: string;
  readonly port: number;
  readonly storeDir: string;
  /** SIGTERM and wait for exit; removes a temp store dir unless `keepStore`. Idempotent. */
  stop(opts?: { keepStore?: boolean }): Promise<void>;
  /** Stops (keeping the store) if running, then starts again on the same port and store dir. */
  restart(): Promise<void>;
  /** SIGKILL and wait for exit (store kept; restart() brings it back). */
  kill9(): Promise<void>;
  /** Stops without waiting for ready and without removing anything: only the process. */
  pause(): Promise<void>;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

/** Resolves once something on the port sends the NATS INFO line. */
function probe(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = connect({ host: '127.0.0.1', port });
    const done = (ok: boolean): void => {
      sock.destroy();
      resolve(ok);
    };
    sock.setTimeout(500, () => done(false));
    sock.once('error', () => done(false));
    sock.once('data', (d) => done(d.toString('latin1').startsWith('INFO')));
  });
}

function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

/** Starts nats-server and waits until it accepts connections. */
export async function startNatsServer(opts: NatsServerOptions = {}): Promise<NatsServer> {
  const port = opts.port ?? (await freePort());
  const ownStore = opts.storeDir === undefined;
  const storeDir = opts.storeDir ?? mkdtempSync(join(tmpdir(), 'gammaray-nats-'));
  let child: ChildProcess | undefined;
  let stderr = '';

  const launch = async (): Promise<void> => {
    const args = ['-a', '127.0.0.1', '-p', String(port), ...(opts.jetstream === false ? [] : ['-js', '-sd', storeDir]), ...(opts.args ?? [])];
    stderr = '';
    const c = spawn(NATS_SERVER_BIN, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    c.stderr?.on('data', (d: Buffer) => {
      stderr = (stderr + d.toString()).slice(-4000);
    });
    child = c;
    const deadline = Date.now() + 10_000;
    for (;;) {
      if (c.exitCode !== null) throw new Error(`nats-server exited with ${c.exitCode}: ${stderr}`);
      if (await probe(port)) break;
      if (Date.now() > deadline) throw new Error(`nats-server did not accept connections on ${port}: ${stderr}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    // JetStream is enabled after the listener opens on some versions; its log line says when it is ready.
    if (opts.jetstream !== false) {
      while (!/Server is ready/.test(stderr) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    }
  };

  const halt = async (signal: NodeJS.Signals): Promise<void> => {
    const c = child;
    child = undefined;
    if (!c) return;
    c.kill(signal);
    await exited(c);
  };

  await launch();
  let stopped = false;
  return {
    url: `nats://127.0.0.1:${port}`,
    port,
    storeDir,
    stop: async (o = {}) => {
      await halt('SIGTERM');
      if (!stopped && ownStore && !o.keepStore) rmSync(storeDir, { recursive: true, force: true });
      stopped = true;
    },
    restart: async () => {
      await halt('SIGTERM');
      await launch();
    },
    kill9: () => halt('SIGKILL'),
    pause: () => halt('SIGTERM'),
  };
}

/** A cluster of nats-servers on loopback, routed to each other, JetStream clustered. */
export interface NatsCluster {
  readonly nodes: readonly NatsServer[];
  /** Client URLs of every node, comma separated (the form `--nats` and connect({servers}) accept). */
  readonly urls: string[];
  stop(): Promise<void>;
}

/**
 * Starts `n` nats-servers (default 3) with JetStream, named n0..n(n-1), in cluster `gammaray-test` with full
 * routes, and waits until JetStream has a meta leader (streams with replicas n can then be created).
 */
export async function startNatsCluster(n = 3): Promise<NatsCluster> {
  // Every client and route port chosen up front and distinct: a free port picked while the nodes start could be
  // one another node is about to listen on.
  const ports = new Set<number>();
  while (ports.size < 2 * n) ports.add(await freePort());
  const [clientPorts, clusterPorts] = [[...ports].slice(0, n), [...ports].slice(n)];
  const routes = clusterPorts.map((p) => `nats://127.0.0.1:${p}`).join(',');
  const nodes = await Promise.all(
    clusterPorts.map((cp, i) =>
      startNatsServer({ port: clientPorts[i], args: ['--name', `n${i}`, '--cluster_name', 'gammaray-test', '--cluster', `nats://127.0.0.1:${cp}`, '--routes', routes] }),
    ),
  );
  return {
    nodes,
    urls: nodes.map((s) => s.url),
    stop: async () => {
      await Promise.all(nodes.map((s) => s.stop()));
    },
  };
}
