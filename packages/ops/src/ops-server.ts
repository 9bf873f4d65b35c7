import { createServer, type Server } from 'node:http';
import type { Registry } from 'prom-client';
import type { Logger } from 'pino';

/** Whether a service can do its job now, and if not, why (shown by /readyz). */
export interface Readiness {
  readonly ready: boolean;
  /** What is missing, for an operator ("NATS is disconnected", "disk d1 not attached"). */
  readonly why?: string;
  /** Anything else worth showing (per-disk state...), serialised as JSON. */
  readonly detail?: unknown;
}

/**
 * One HTTP port per service for operators: `GET /metrics` (Prometheus text from `registry`), `GET /healthz`
 * (200 while the process answers: a liveness probe), `GET /readyz` (200 with `{ready: true}` when `ready()`
 * says so, else 503 with the reason: a readiness probe). Anything else is 404; methods other than GET/HEAD 405.
 */
export class OpsServer {
  readonly #registry: Registry;
  readonly #ready: () => Readiness | Promise<Readiness>;
  #server: Server | undefined;
  #address: { host: string; port: number } | undefined;

  constructor(registry: Registry, ready: () => Readiness | Promise<Readiness>) {
    this.#registry = registry;
    this.#ready = ready;
  }

  /** The address it listens on (the real port when 0 was asked for). */
  get address(): { host: string; port: number } | undefined {
    return this.#address;
  }

  /** Starts serving on host:port; rejects if the port cannot be bound. */
  async listen(host: string, port: number, log: Logger): Promise<void> {
    const server = createServer((req, res) => {
      const path = (req.url ?? '').split('?')[0];
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        res.writeHead(405, { allow: 'GET, HEAD' }).end();
        return;
      }
      const fail = (err: unknown) => {
        log.warn({ err, path }, 'operations endpoint failed');
        if (!res.headersSent) res.writeHead(500).end();
      };
      if (path === '/metrics') {
        this.#registry.metrics().then((text) => res.writeHead(200, { 'content-type': this.#registry.contentType }).end(text), fail);
      } else if (path === '/healthz') {
        res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
      } else if (path === '/readyz') {
        Promise.resolve()
          .then(() => this.#ready())
          .then((r) => res.writeHead(r.ready ? 200 : 503, { 'content-type': 'application/json' }).end(`${JSON.stringify(r)}\n`), fail);
      } else {
        res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: try /metrics, /healthz or /readyz\n');
      }
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    this.#server = server;
    const addr = server.address();
    this.#address = { host, port: typeof addr === 'object' && addr ? addr.port : port };
    log.info({ host, port: this.#address.port }, 'serving Prometheus metrics at /metrics, health at /healthz and /readyz');
  }

  /** Stops serving. */
  async stop(): Promise<void> {
    const s = this.#server;
    this.#server = undefined;
    if (s) {
      s.closeAllConnections();
      await new Promise<void>((r) => s.close(() => r()));
    }
  }
}
