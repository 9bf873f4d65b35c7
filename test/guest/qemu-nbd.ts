import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { connect, createServer } from 'node:net';

/**
 * A TCP port that was free a moment ago: bind port 0, read the port, close. qemu-nbd cannot listen on port 0 and
 * report the port, so this is the usual small race; {@link serveImage} retries on a clash.
 */
export function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.on('error', reject);
    server.listen(0, host, () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => (port > 0 ? resolve(port) : reject(new Error('no port from listen(0)'))));
    });
  });
}

function canConnect(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/** A running qemu-nbd serving one image file; stop it before reading the file from the host. */
export interface NbdServer {
  /** URL for QEMU's NBD client (`runGuest({ nbd })`). */
  readonly url: string;
  readonly port: number;
  /** Stops qemu-nbd and waits for it to exit, so every write it accepted has reached the image file. */
  stop(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

/** Options for {@link serveImage}. */
export interface ServeImageOptions {
  /** Image format (default `raw`). */
  readonly format?: string;
  /** qemu-nbd `--cache` mode for the image file (default qemu-nbd's: writeback). */
  readonly cache?: string;
  readonly host?: string;
}

const READY_TIMEOUT_MS = 10_000;
const READY_POLL_MS = 50;

/**
 * Serves `path` read-write over NBD with `qemu-nbd --persistent` (the readiness probe and the guest are two
 * connections), bound to 127.0.0.1 on a free port. Resolves once the port accepts connections.
 */
export async function serveImage(path: string, options: ServeImageOptions = {}): Promise<NbdServer> {
  const host = options.host ?? '127.0.0.1';
  for (let attempt = 0; ; attempt++) {
    const port = await freePort(host);
    const args = ['-f', options.format ?? 'raw', '-t', '-b', host, '-p', String(port), '-e', '2'];
    if (options.cache !== undefined) args.push(`--cache=${options.cache}`);
    args.push(path);
    const child = spawn('qemu-nbd', args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr?.on('data', (c: Buffer) => {
      stderr += c.toString('utf8');
    });
    const exited = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)));
    let dead = false;
    void exited.then(() => {
      dead = true;
    });
    const spawnError = new Promise<Error>((resolve) => child.once('error', resolve));
    const deadline = Date.now() + READY_TIMEOUT_MS;
    let ready = false;
    while (!dead && Date.now() < deadline) {
      const probe = await Promise.race([canConnect(host, port), spawnError]);
      if (probe instanceof Error) throw new Error('cannot start qemu-nbd (apt-get install qemu-utils)', { cause: probe });
      if (probe) {
        ready = true;
        break;
      }
      await new Promise((r) => setTimeout(r, READY_POLL_MS));
    }
    if (ready) return nbdServer(child, exited, host, port);
    child.kill('SIGKILL');
    await exited;
    // "Address already in use": someone took the port between freePort and qemu-nbd's bind.
    if (attempt < 3 && /in use/i.test(stderr)) continue;
    throw new Error(`qemu-nbd ${args.join(' ')} did not come up: ${stderr.trim()}`);
  }
}

function nbdServer(child: ChildProcess, exited: Promise<number | null>, host: string, port: number): NbdServer {
  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    await exited;
  };
  return { url: `nbd://${host}:${port}`, port, stop, [Symbol.asyncDispose]: stop };
}
