/**
 * The gammaray.v1 protocol: where the .proto lives, how it is loaded (proto-loader at run time, no generated
 * code), and the TypeScript shapes of its messages as proto-loader hands them over with {@link LOADER_OPTIONS}
 * (camelCase fields, 64-bit integers as numbers, enums as their names, defaults filled in).
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import * as protoLoader from '@grpc/proto-loader';

/** Directory holding `gammaray/v1/view.proto` (the repository's `proto/`). */
export const PROTO_ROOT = fileURLToPath(new URL('../../../proto/', import.meta.url));
/** The view API's file, relative to {@link PROTO_ROOT}. */
export const VIEW_PROTO_FILE = 'gammaray/v1/view.proto';
/**
 * The compiled descriptors of the API (a FileDescriptorSet with source info, written by `pnpm proto` = `buf build
 * proto -o proto/descriptors.binpb`; a test checks it matches the .proto). Server reflection serves these
 * exact descriptors: the ones proto-loader derives lose snake_case names and qualified type references, which
 * reflection clients (buf curl, grpcurl) cannot resolve.
 */
export const VIEW_DESCRIPTOR_FILE = 'descriptors.binpb';
/** Fully qualified name of the service (also its grpc.health.v1 service name). */
export const VIEW_SERVICE_NAME = 'gammaray.v1.ViewService';

/** proto-loader options the server and the clients share. */
export const LOADER_OPTIONS: protoLoader.Options = {
  keepCase: false,
  longs: Number,
  enums: String,
  bytes: Buffer,
  defaults: true,
  oneofs: true,
  includeDirs: [PROTO_ROOT],
};

/** Loads the view API (with the descriptors server reflection needs). */
export function loadViewPackage(): protoLoader.PackageDefinition {
  return protoLoader.loadSync(VIEW_PROTO_FILE, LOADER_OPTIONS);
}

/**
 * The FileDescriptorProto bytes of each file of the descriptor set (field 1 of FileDescriptorSet, repeated,
 * length-delimited), in the form @grpc/reflection reads from a package definition.
 */
export function viewFileDescriptors(): Buffer[] {
  const set = readFileSync(`${PROTO_ROOT}${VIEW_DESCRIPTOR_FILE}`);
  const files: Buffer[] = [];
  let at = 0;
  const varint = (): number => {
    let v = 0;
    for (let shift = 0; shift < 35; shift += 7) {
      const b = set[at++];
      if (b === undefined) throw new Error(`${VIEW_DESCRIPTOR_FILE} is truncated`);
      v += (b & 0x7f) * 2 ** shift;
      if (b < 0x80) return v;
    }
    throw new Error(`${VIEW_DESCRIPTOR_FILE} has an overlong varint`);
  };
  while (at < set.length) {
    const tag = varint();
    if (tag !== (1 << 3) + 2) throw new Error(`${VIEW_DESCRIPTOR_FILE} is not a FileDescriptorSet (tag ${tag}); rebuild it with: pnpm proto`);
    const n = varint();
    if (at + n > set.length) throw new Error(`${VIEW_DESCRIPTOR_FILE} is truncated`);
    files.push(set.subarray(at, at + n));
    at += n;
  }
  return files;
}

/** `FileType` of the proto, by name. */
export type FileTypeName = 'FILE_TYPE_UNSPECIFIED' | 'FILE_TYPE_FILE' | 'FILE_TYPE_DIR' | 'FILE_TYPE_SYMLINK' | 'FILE_TYPE_CHR' | 'FILE_TYPE_BLK' | 'FILE_TYPE_FIFO' | 'FILE_TYPE_SOCK';

/** `Entry`. */
export interface EntryMessage {
  path: string;
  name: string;
  ino: number;
  type: FileTypeName;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  nlink: number;
  mtime: number;
  mtimeNsec: number;
  atime: number;
  atimeNsec: number;
  ctime: number;
  ctimeNsec: number;
  target: string;
  sha256: string;
  xattrs: Record<string, Buffer>;
  flags: number;
  /** Character and block devices; null (unset) otherwise. */
  rdev: DeviceNumberMessage | null;
}

/** `DeviceNumber`. */
export interface DeviceNumberMessage {
  major: number;
  minor: number;
}

/** `Disk`. */
export interface DiskMessage {
  id: string;
  size: number;
  state: string;
  phase: string;
  ready: boolean;
  appliedSeq: number;
  pendingRecords: number;
  files: number;
  dirs: number;
  capture: string;
  partition: number;
  partitionStart: number;
  source: string;
  lv: string;
}

export interface ListDisksResponse {
  disks: DiskMessage[];
}
export interface PathRequest {
  disk: string;
  path: string;
}
export interface StatResponse {
  entry: EntryMessage;
  seq: number;
}
export interface ListDirRequest extends PathRequest {
  pageSize: number;
  pageToken: string;
}
export interface ListDirResponse {
  dir: EntryMessage;
  entries: EntryMessage[];
  nextPageToken: string;
  seq: number;
}
export interface ReadLinkResponse {
  target: string;
  seq: number;
}
export interface ReadFileRequest extends PathRequest {
  offset: number;
  length: number;
  chunkSize: number;
}
export interface ReadFileResponse {
  offset: number;
  data: Buffer;
  seq: number;
  size: number;
}
export interface GetTreeRequest extends PathRequest {
  hash: boolean;
}
export interface GetTreeResponse {
  entry: EntryMessage;
  seq: number;
}
export interface WatchRequest {
  disk: string;
  glob: string;
  kinds: string[];
  fromSeq?: number;
  fromStart?: boolean;
  fromNow?: boolean;
  /** Which member of the `start` oneof is set (proto-loader's `oneofs: true`). */
  start?: 'fromSeq' | 'fromStart' | 'fromNow';
}
export interface EventStatMessage {
  mode: number;
  uid: number;
  gid: number;
  size: number;
  nlink: number;
  atime: number;
  atimeNsec: number;
  mtime: number;
  mtimeNsec: number;
  ctime: number;
  ctimeNsec: number;
  flags: number;
}
export interface EventMessage {
  disk: string;
  kind: string;
  path: string;
  ino: number;
  type: string;
  writeSeq: number;
  idx: number;
  tsMs: number;
  stat?: EventStatMessage | null;
  parentIno: number;
  from: string;
  fromParentIno: number;
  target: string;
  offset: number;
  length: number;
  data: Buffer;
  dataOmitted: boolean;
  oldSize: number;
  size: number;
  changes: Record<string, { oldJson: string; newJson: string }>;
  files: number;
  dirs: number;
  corruptKind: string;
  message: string;
  block: number;
  reason: string;
  partition: number;
  lv: string;
  exchange: boolean;
  rdev: DeviceNumberMessage | null;
}
export interface WatchResponse {
  seq: number;
  event: EventMessage;
}
