import { readFileSync } from 'node:fs';
import { ExitCode, RuntimeFailure, UserError } from '../errors.js';
import { escapeControls, type Terminal } from '../output.js';

/** Options of `gammaray tree`. */
export interface TreeCliOptions {
  readonly grpc: string | undefined;
  readonly json: boolean;
  readonly hash: boolean;
  /** Bearer token (default GAMMARAY_TOKEN). */
  readonly token: string | undefined;
  /** TLS: CA of the view's certificate (PEM); with --tls-cert/--tls-key, a client certificate. */
  readonly tlsCa: string | undefined;
  readonly tlsCert: string | undefined;
  readonly tlsKey: string | undefined;
}

/** What grpc-js rejects a call with. */
interface ServiceError {
  readonly code?: number;
  readonly details: string;
  readonly metadata?: { get(key: string): unknown[] };
}

/** gRPC status codes the messages below distinguish (grpc-js `status`). */
const Code = { INVALID_ARGUMENT: 3, NOT_FOUND: 5, FAILED_PRECONDITION: 9, UNAVAILABLE: 14, UNAUTHENTICATED: 16 } as const;

function readPem(path: string, flag: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new UserError(`${flag} ${path}: cannot be read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}); give a PEM file`);
  }
}

/**
 * `gammaray tree DISK`: the disk's current tree from a view (gRPC GetTree), one line per path in path order;
 * `--json` prints CLI.md tree entries, `--hash` adds the SHA-256 of each regular file.
 */
export async function runTree(term: Terminal, disk: string, o: TreeCliOptions): Promise<ExitCode> {
  const address = (o.grpc ?? process.env['GAMMARAY_GRPC'] ?? '127.0.0.1:50051').trim();
  const port = /^(?:\[[^\]]+\]|[^:\s]+):(\d{1,5})$/.exec(address)?.[1];
  if (port === undefined || Number(port) < 1 || Number(port) > 65535) {
    throw new UserError(`--grpc must be HOST:PORT of a gammaray view, the port 1 to 65535 (e.g. 127.0.0.1:50051), got ${JSON.stringify(address)}`);
  }
  if (!!o.tlsCert !== !!o.tlsKey) throw new UserError('--tls-cert and --tls-key go together: give both for a client certificate, or neither');
  const token = o.token ?? process.env['GAMMARAY_TOKEN'];
  const useTls = o.tlsCa !== undefined || o.tlsCert !== undefined;
  const tls = useTls
    ? { ca: o.tlsCa ? readPem(o.tlsCa, '--tls-ca') : undefined, cert: o.tlsCert ? readPem(o.tlsCert, '--tls-cert') : undefined, key: o.tlsKey ? readPem(o.tlsKey, '--tls-key') : undefined }
    : undefined;

  // Loaded on demand: the offline commands never pay for gRPC.
  const view = await import('@gammaray/service-view');
  const client = new view.ViewClient(address, { token: token || undefined, tls });
  // Escaped into pipes too (see ls): one line per path whatever the guest named its files; --json is exact.
  const show = escapeControls;
  const out = term.out;
  try {
    for await (const m of client.getTree(disk, { hash: o.hash })) {
      const e = view.treeEntryOfMessage(m.entry);
      const line = o.json ? JSON.stringify(e) : `${o.hash ? `${e.sha256 ?? '-'}  ` : ''}${show(e.path)}`;
      const p = out.text(`${line}\n`);
      if (p) await p;
    }
  } catch (err) {
    throw treeError(err as ServiceError, address, disk, view.ERROR_REASON_KEY);
  } finally {
    client.close();
  }
  await out.flush();
  return ExitCode.ok;
}

function treeError(err: ServiceError, address: string, disk: string, reasonKey: string): unknown {
  if (typeof err?.code !== 'number') return err;
  const fromServer = (err.metadata?.get(reasonKey).length ?? 0) > 0;
  switch (err.code) {
    case Code.NOT_FOUND:
    case Code.INVALID_ARGUMENT:
      return new UserError(err.details);
    case Code.UNAUTHENTICATED:
      return new UserError(`${err.details} (pass --token or set GAMMARAY_TOKEN)`);
    case Code.FAILED_PRECONDITION:
      return new RuntimeFailure(err.details, { cause: err });
    case Code.UNAVAILABLE:
      if (fromServer) return new RuntimeFailure(err.details, { cause: err });
      return new RuntimeFailure(`no gammaray view answers at ${address} (${err.details.replace(/\s*Resolution note:\s*$/, '')}); start one with: gammaray view --grpc ${address}, or pass --grpc HOST:PORT`, { cause: err });
    default:
      return new RuntimeFailure(`tree of disk ${disk} failed: ${err.details}`, { cause: err });
  }
}
