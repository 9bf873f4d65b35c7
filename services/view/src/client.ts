/**
 * A small promise/async-iterator client of gammaray.v1.ViewService over grpc-js (for `gammaray tree`, tests and
 * benchmarks). Failures are grpc-js ServiceErrors (`code`, `details`, `metadata`).
 */
import * as grpc from '@grpc/grpc-js';
import { loadViewPackage } from './proto.js';
import type {
  GetTreeRequest,
  GetTreeResponse,
  ListDirRequest,
  ListDirResponse,
  ListDisksResponse,
  PathRequest,
  ReadFileRequest,
  ReadFileResponse,
  ReadLinkResponse,
  StatResponse,
  WatchRequest,
  WatchResponse,
} from './proto.js';

/** How to reach a view. */
export interface ViewClientOptions {
  /** Bearer token sent as `authorization: Bearer <token>` on every call. */
  readonly token?: string;
  /** TLS: the server's CA (PEM; absent = the system's roots) and, for client certificates, cert + key. */
  readonly tls?: { readonly ca?: Buffer; readonly cert?: Buffer; readonly key?: Buffer; readonly serverName?: string };
}

type RawClient = grpc.Client & Record<string, (...args: unknown[]) => unknown>;

let ctor: grpc.ServiceClientConstructor | undefined;
function clientConstructor(): grpc.ServiceClientConstructor {
  if (!ctor) {
    const def = grpc.loadPackageDefinition(loadViewPackage()) as unknown as { gammaray: { v1: { ViewService: grpc.ServiceClientConstructor } } };
    ctor = def.gammaray.v1.ViewService;
  }
  return ctor;
}

/** A connection to one view (`HOST:PORT`). */
export class ViewClient {
  readonly #raw: RawClient;
  readonly #token: string | undefined;

  constructor(address: string, opts: ViewClientOptions = {}) {
    const creds = opts.tls ? grpc.credentials.createSsl(opts.tls.ca ?? null, opts.tls.key ?? null, opts.tls.cert ?? null) : grpc.credentials.createInsecure();
    const channelOpts: grpc.ChannelOptions = { 'grpc.max_receive_message_length': 16 * 1024 * 1024 };
    if (opts.tls?.serverName) channelOpts['grpc.ssl_target_name_override'] = opts.tls.serverName;
    this.#raw = new (clientConstructor())(address, creds, channelOpts) as unknown as RawClient;
    this.#token = opts.token;
  }

  #md(): grpc.Metadata {
    const md = new grpc.Metadata();
    if (this.#token) md.set('authorization', `Bearer ${this.#token}`);
    return md;
  }

  #unary<Res>(method: string, req: object, deadlineMs = 30_000): Promise<Res> {
    return new Promise((resolve, reject) => {
      this.#raw[method]!(req, this.#md(), { deadline: Date.now() + deadlineMs }, (err: grpc.ServiceError | null, res: Res) => (err ? reject(err) : resolve(res))); // ok: methods of the loaded service
    });
  }

  #stream<Res>(method: string, req: object): AsyncIterable<Res> & { cancel(): void } {
    const call = this.#raw[method]!(req, this.#md()) as grpc.ClientReadableStream<Res>; // ok: methods of the loaded service
    // ok: a grpc-js ClientReadableStream is async-iterable and has cancel()
    return call as unknown as AsyncIterable<Res> & { cancel(): void };
  }

  /** Waits until the channel is connected (or rejects after `ms`). */
  waitForReady(ms: number): Promise<void> {
    return new Promise((resolve, reject) => this.#raw.waitForReady(Date.now() + ms, (err) => (err ? reject(err) : resolve())));
  }

  listDisks(): Promise<ListDisksResponse> {
    return this.#unary('ListDisks', {});
  }

  stat(disk: string, path: string): Promise<StatResponse> {
    return this.#unary('Stat', { disk, path } satisfies PathRequest);
  }

  listDir(disk: string, path: string, page: { pageSize?: number; pageToken?: string } = {}): Promise<ListDirResponse> {
    return this.#unary('ListDir', { disk, path, pageSize: page.pageSize ?? 0, pageToken: page.pageToken ?? '' } satisfies ListDirRequest);
  }

  readLink(disk: string, path: string): Promise<ReadLinkResponse> {
    return this.#unary('ReadLink', { disk, path } satisfies PathRequest);
  }

  readFile(disk: string, path: string, range: { offset?: number; length?: number; chunkSize?: number } = {}): AsyncIterable<ReadFileResponse> & { cancel(): void } {
    return this.#stream('ReadFile', { disk, path, offset: range.offset ?? 0, length: range.length ?? 0, chunkSize: range.chunkSize ?? 0 } satisfies ReadFileRequest);
  }

  getTree(disk: string, opts: { path?: string; hash?: boolean } = {}): AsyncIterable<GetTreeResponse> & { cancel(): void } {
    return this.#stream('GetTree', { disk, path: opts.path ?? '', hash: opts.hash ?? false } satisfies GetTreeRequest);
  }

  /** `from`: a stream sequence, 'start', or 'now' (default). */
  watch(disk: string, opts: { glob?: string; kinds?: readonly string[]; from?: number | 'start' | 'now' } = {}): AsyncIterable<WatchResponse> & { cancel(): void } {
    const from = opts.from ?? 'now';
    const req: Partial<WatchRequest> = { disk, glob: opts.glob ?? '', kinds: [...(opts.kinds ?? [])] };
    if (typeof from === 'number') req.fromSeq = from;
    else if (from === 'start') req.fromStart = true;
    else req.fromNow = true;
    return this.#stream('Watch', req);
  }

  close(): void {
    this.#raw.close();
  }
}
