/**
 * The gammaray.v1.ViewService handlers: each one asks the disk's replica (never an inferencer) and maps its
 * errors to gRPC statuses (./status.ts). Streams respect backpressure and stop when the caller cancels.
 */
import { createHash } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import type { JetStreamClient, JetStreamManager } from '@nats-io/jetstream';
import { FileType } from '@gammaray/ext4';
import type { FsNode } from '@gammaray/inferencer';
import { EventWatch, ReplicaError, ReplicaErrorCode, joinPath, splitRequestPath, type DiskReplica, type ReplicaSet, type WatchFrom } from '@gammaray/replica';
import { isDiskId } from '@gammaray/wire';
import type { Logger } from 'pino';
import { entryMessage, eventMessage } from './convert.js';
import type {
  DiskMessage,
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
import { ApiError, ApiReason, toServiceError } from './status.js';

/** Default and largest ListDir page. */
export const DEFAULT_PAGE_SIZE = 1000;
export const MAX_PAGE_SIZE = 10_000;
/** Default, smallest and largest ReadFile chunk. */
export const DEFAULT_CHUNK_SIZE = 256 * 1024;
export const MIN_CHUNK_SIZE = 4096;
export const MAX_CHUNK_SIZE = 4 * 1024 * 1024;
/** Bytes per block-read call while hashing a file for GetTree. */
const HASH_READ_BYTES = 4 * 1024 * 1024;
/** Files hashed at once for one GetTree (their entries still go out in path order). */
const HASH_CONCURRENCY = 4;

/** Options of {@link createViewHandlers}. */
export interface ViewApiOptions {
  readonly replicas: ReplicaSet;
  readonly js: JetStreamClient;
  readonly jsm: JetStreamManager;
  readonly log: Logger;
}

/** The handlers, plus what shutdown needs. */
export interface ViewHandlers {
  readonly implementation: grpc.UntypedServiceImplementation;
  /** Ends every open Watch with UNAVAILABLE (the view is stopping: resume elsewhere from seq + 1). */
  closeWatches(): void;
}

type Unary<Req, Res> = (call: grpc.ServerUnaryCall<Req, Res>, callback: grpc.sendUnaryData<Res>) => void;
type Streaming<Req, Res> = (call: grpc.ServerWritableStream<Req, Res>) => void;

/** Builds the service implementation over a replica set. */
export function createViewHandlers(o: ViewApiOptions): ViewHandlers {
  const log = o.log;
  const onInternal = (err: unknown): void => log.error({ err }, 'request failed unexpectedly');
  const watches = new Set<{ watch: EventWatch; call: grpc.ServerWritableStream<WatchRequest, WatchResponse> }>();
  let closing = false;

  const unary =
    <Req, Res>(f: (req: Req) => Promise<Res>): Unary<Req, Res> =>
    (call, callback) => {
      f(call.request).then(
        (res) => callback(null, res),
        (err: unknown) => callback(toServiceError(err, onInternal)),
      );
    };

  const streaming =
    <Req, Res>(f: (req: Req, send: (m: Res) => Promise<void> | undefined, call: grpc.ServerWritableStream<Req, Res>) => Promise<void>): Streaming<Req, Res> =>
    (call) => {
      const send = (m: Res): Promise<void> | undefined => (call.write(m) ? undefined : drained(call));
      f(call.request, send, call).then(
        () => {
          if (!call.cancelled) call.end();
        },
        (err: unknown) => {
          if (!call.cancelled) call.emit('error', toServiceError(err, onInternal));
        },
      );
    };

  const replicaOf = (disk: string): DiskReplica => o.replicas.get(disk);

  const implementation: grpc.UntypedServiceImplementation = {
    ListDisks: unary<Record<string, never>, ListDisksResponse>(async () => {
      const disks: DiskMessage[] = o.replicas.list().map(({ entry, replica }) => {
        const s = replica?.status();
        return {
          id: entry.disk,
          size: entry.size,
          state: entry.state,
          phase: s?.phase ?? '',
          ready: replica?.ready ?? false,
          appliedSeq: Math.max(0, s?.appliedSeq ?? 0),
          pendingRecords: s?.pending ?? 0,
          files: s?.files ?? 0,
          dirs: s?.dirs ?? 0,
          capture: entry.capture,
          partition: s?.window?.partition ?? 0,
          partitionStart: s?.window?.start ?? 0,
          source: entry.source ?? '',
          lv: s?.window?.lv ?? '',
        };
      });
      return { disks };
    }),

    Stat: unary<PathRequest, StatResponse>(async (req) => {
      const replica = replicaOf(req.disk);
      const at = await replica.resolve(req.path);
      return { entry: entryMessage(replica.entryOf(at), at.node, { xattrs: true }), seq: at.seq };
    }),

    ListDir: unary<ListDirRequest, ListDirResponse>(async (req) => {
      const pageSize = req.pageSize === 0 ? DEFAULT_PAGE_SIZE : req.pageSize;
      if (!(pageSize >= 1 && pageSize <= MAX_PAGE_SIZE)) {
        throw new ReplicaError(ReplicaErrorCode.InvalidArgument, `page_size ${req.pageSize} is out of range: give 1 to ${MAX_PAGE_SIZE}, or 0 for ${DEFAULT_PAGE_SIZE}`);
      }
      const replica = replicaOf(req.disk);
      let after: string | undefined;
      if (req.pageToken !== '') {
        // The token names its directory; check it against the resolved path before using it.
        const token = decodePageToken(req.pageToken, req.disk);
        if (token.dir !== joinPath(splitRequestPath(req.path))) throw badToken(`belongs to a listing of ${token.dir} on disk ${token.disk}`);
        after = token.after;
      }
      const { dir, entries: page, more } = await replica.listPage(req.path, after, pageSize);
      const prefix = dir.path === '/' ? '/' : `${dir.path}/`;
      return {
        dir: entryMessage(replica.entryOf(dir), dir.node),
        entries: page.map((e) => {
          const path = prefix + e.name;
          return entryMessage(replica.entryOf({ path, node: e.node, seq: dir.seq }), e.node);
        }),
        nextPageToken: more && page.length > 0 ? encodePageToken(req.disk, dir.path, page[page.length - 1]!.name) : '', // ok: length > 0
        seq: dir.seq,
      };
    }),

    ReadLink: unary<PathRequest, ReadLinkResponse>(async (req) => {
      const at = await replicaOf(req.disk).resolve(req.path);
      if (at.node.type !== FileType.symlink) {
        throw new ApiError(grpc.status.INVALID_ARGUMENT, ApiReason.NotASymlink, `${at.path} on disk ${req.disk} is not a symbolic link (it is a ${at.node.type}); Stat it instead`);
      }
      return { target: at.node.target ?? '', seq: at.seq };
    }),

    ReadFile: streaming<ReadFileRequest, ReadFileResponse>(async (req, send, call) => {
      const chunk = req.chunkSize === 0 ? DEFAULT_CHUNK_SIZE : req.chunkSize;
      if (!(chunk >= MIN_CHUNK_SIZE && chunk <= MAX_CHUNK_SIZE)) {
        throw new ReplicaError(ReplicaErrorCode.InvalidArgument, `chunk_size ${req.chunkSize} is out of range: give ${MIN_CHUNK_SIZE} to ${MAX_CHUNK_SIZE}, or 0 for ${DEFAULT_CHUNK_SIZE}`);
      }
      if (!Number.isSafeInteger(req.offset) || !Number.isSafeInteger(req.length)) {
        // Not echoed: a value this large arrived rounded (proto-loader's longs are numbers), so it would print wrong.
        const which = Number.isSafeInteger(req.offset) ? 'length' : 'offset';
        throw new ReplicaError(ReplicaErrorCode.InvalidArgument, `${which} must be below 2^53 (9007199254740992) bytes`);
      }
      const replica = replicaOf(req.disk);
      const at = await replica.resolve(req.path);
      const node = at.node;
      if (node.type === FileType.dir) throw new ReplicaError(ReplicaErrorCode.IsADirectory, `${at.path} on disk ${req.disk} is a directory: list it with ListDir`);
      if (node.type !== FileType.file) {
        throw new ReplicaError(ReplicaErrorCode.InvalidArgument, `${at.path} on disk ${req.disk} is a ${node.type}, not a regular file${node.type === FileType.symlink ? ': read its target with ReadLink' : ''}`);
      }
      const end = req.length === 0 ? node.size : Math.min(node.size, req.offset + req.length);
      let offset = req.offset;
      let first = true;
      do {
        const n = Math.max(0, Math.min(chunk, end - offset));
        const got = n > 0 ? await replica.read(node, offset, n) : { data: new Uint8Array(0), seq: 0 };
        if (call.cancelled) return;
        const data = Buffer.from(got.data.buffer, got.data.byteOffset, got.data.length);
        const p = send({ offset, data, seq: got.seq, size: first ? node.size : 0 });
        if (p) await p;
        first = false;
        offset += n;
      } while (offset < end && !call.cancelled);
    }),

    GetTree: streaming<GetTreeRequest, GetTreeResponse>(async (req, send, call) => {
      const replica = replicaOf(req.disk);
      const { seq, items } = await replica.subtree(req.path === '' ? '/' : req.path);
      // Hashes are computed ahead in a window; entries still leave in path order.
      const hashes: (Promise<string> | undefined)[] = items.map(() => undefined);
      const hashAt = (i: number): Promise<string> | undefined => {
        const it = items[i];
        if (!req.hash || !it || it.node.type !== FileType.file) return undefined;
        const p = (hashes[i] ??= hashFile(replica, it.node));
        p.catch(() => undefined); // awaited below; a rejection ahead of its turn is not unhandled
        return p;
      };
      for (let i = 0; i < items.length; i++) {
        if (call.cancelled) return;
        for (let j = i; j < Math.min(items.length, i + HASH_CONCURRENCY); j++) hashAt(j);
        const it = items[i]!; // ok: i < length
        const sha256 = await hashAt(i);
        const p = send({ entry: entryMessage(it.entry, it.node, { sha256 }), seq });
        if (p) await p;
      }
    }),

    Watch: (call: grpc.ServerWritableStream<WatchRequest, WatchResponse>) => {
      const req = call.request;
      const run = async (): Promise<void> => {
        if (closing) throw new ReplicaError(ReplicaErrorCode.Unavailable, 'the view is stopping; connect to another view replica');
        if (isDiskId(req.disk) && !o.replicas.list().some((d) => d.entry.disk === req.disk)) {
          throw new ReplicaError(ReplicaErrorCode.NotFound, `disk ${req.disk} is not in the disk registry (list the disks with ListDisks)`);
        }
        let from: WatchFrom;
        if (req.start === 'fromSeq') from = { at: 'seq', seq: req.fromSeq ?? 0 };
        else if (req.start === 'fromStart') from = { at: 'first' };
        else from = { at: 'now' };
        const watch = await EventWatch.open({
          js: o.js,
          jsm: o.jsm,
          disk: req.disk,
          glob: req.glob,
          kinds: req.kinds,
          from,
          onUndecodable: (seq, subject, err) => log.warn({ err, seq, subject }, 'skipping a message of the events stream that is not an event'),
          onStall: (st) => log.warn({ disk: req.disk, ...st }, 'a Watch consumer went quiet while events waited; reading on with a new one'),
        });
        const entry = { watch, call };
        watches.add(entry);
        const stop = (): void => watch.stop();
        call.once('cancelled', stop);
        try {
          if (call.cancelled) return;
          for await (const w of watch) {
            if (call.cancelled) break;
            if (!call.write({ seq: w.seq, event: eventMessage(w.event) })) await drained(call);
          }
        } finally {
          watches.delete(entry);
          call.off('cancelled', stop);
          watch.stop();
        }
        if (closing) throw new ReplicaError(ReplicaErrorCode.Unavailable, 'the view is stopping; resume on another view replica from the last seq received + 1');
        if (!call.cancelled) throw new ReplicaError(ReplicaErrorCode.Unavailable, 'the events stream consumer ended; resume from the last seq received + 1');
      };
      run().then(
        () => undefined,
        (err: unknown) => {
          if (!call.cancelled) call.emit('error', toServiceError(err, onInternal));
        },
      );
    },
  };

  return {
    implementation,
    closeWatches() {
      closing = true;
      for (const { watch } of watches) watch.stop();
    },
  };
}

/** Resolves when the call can take more (or is cancelled or closed). */
function drained(call: grpc.ServerWritableStream<unknown, unknown>): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      call.off('drain', done);
      call.off('cancelled', done);
      call.off('close', done);
      resolve();
    };
    call.on('drain', done);
    call.on('cancelled', done);
    call.on('close', done);
  });
}

/** The SHA-256 of a regular file's content (holes as zeros), read through block reads. */
async function hashFile(replica: DiskReplica, node: FsNode): Promise<string> {
  const h = createHash('sha256');
  for (let at = 0; at < node.size; ) {
    const n = Math.min(HASH_READ_BYTES, node.size - at);
    const got = await replica.read(node, at, n);
    if (got.data.length !== n) throw new ReplicaError(ReplicaErrorCode.Unavailable, `reading inode ${node.ino} at ${at} returned ${got.data.length} of ${n} bytes`);
    h.update(got.data);
    at += n;
  }
  return h.digest('hex');
}

/**
 * Page tokens: base64url of `{d: disk, p: dir path, a: last name returned}`. Not secret and not signed: a token
 * only says where to continue, so a forged one can only ask for a page that could be asked for anyway.
 */
function encodePageToken(disk: string, dir: string, after: string): string {
  return Buffer.from(JSON.stringify({ d: disk, p: dir, a: after })).toString('base64url');
}

function badToken(why: string): ApiError {
  return new ApiError(grpc.status.INVALID_ARGUMENT, ApiReason.BadPageToken, `page_token ${why}: pass the next_page_token of the previous page of the same listing, or none for the first page`);
}

function decodePageToken(token: string, disk: string): { disk: string; dir: string; after: string } {
  if (token.length > 8192) throw badToken('is too long');
  let v: unknown;
  try {
    v = JSON.parse(Buffer.from(token, 'base64url').toString('utf8'));
  } catch {
    throw badToken('is not one this service issued');
  }
  const t = v as { d?: unknown; p?: unknown; a?: unknown } | null;
  if (!t || typeof t !== 'object' || typeof t.a !== 'string' || typeof t.p !== 'string' || typeof t.d !== 'string') throw badToken('is not one this service issued');
  if (t.d !== disk) throw badToken(`belongs to a listing of ${t.p} on disk ${t.d}`);
  return { disk: t.d, dir: t.p, after: t.a };
}
