/**
 * File-level events: what the inferencer publishes to `gammaray.<disk>.fs.<kind>` (one BSON document each).
 * Paths are the guest's names decoded as UTF-8 with invalid bytes escaped as \xNN; they travel only in the
 * payload and the `Gammaray-Path` header, never in a subject.
 */
import type { DeviceNumber, FileType } from '@gammaray/ext4';

/** Every kind of event. */
export const EventKind = {
  Create: 'create',
  Delete: 'delete',
  Rename: 'rename',
  Link: 'link',
  Unlink: 'unlink',
  Write: 'write',
  Truncate: 'truncate',
  Attr: 'attr',
  Snapshot: 'snapshot',
  Corrupt: 'corrupt',
  Resync: 'resync',
} as const;
/** See {@link EventKind}. */
export type EventKind = (typeof EventKind)[keyof typeof EventKind];

/** Version of the event document. */
export const EVENT_VERSION = 1;

/** A time as whole seconds since the epoch plus nanoseconds (as in the tree JSON). */
export interface FsTime {
  readonly sec: number;
  readonly nsec: number;
}

/** An inode's attributes after the change an event reports (lets a consumer fold events into a tree). */
export interface FsStat {
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
  readonly size: number;
  readonly nlink: number;
  readonly atime: FsTime;
  readonly mtime: FsTime;
  readonly ctime: FsTime;
  readonly flags: number;
}

/** A parent directory touched by an entry event: its inode and attributes afterwards. */
export interface ParentRef {
  readonly ino: number;
  readonly stat: FsStat;
}

/** One attribute change of an `attr` event. */
export interface AttrChange {
  readonly old: unknown;
  readonly new: unknown;
}

/**
 * One event. `seq` is the write-stream sequence that completed the change, `idx` its index among the events
 * of that sequence (the pair is the event's identity: `Nats-Msg-Id` = `<disk>:<seq>:<idx>`), `ts` the capture
 * time of that write. Fields after `ts` depend on `kind` (see the README).
 */
export interface FsEvent {
  readonly v: typeof EVENT_VERSION;
  readonly disk: string;
  readonly kind: EventKind;
  /** Absolute path ("/" for the root); for `delete`/`unlink` the path that was removed. Empty for disk-level kinds. */
  readonly path: string;
  /** Inode number; 0 for disk-level kinds. */
  readonly ino: number;
  /** File type; "" for disk-level kinds. */
  readonly type: FileType | '';
  readonly seq: number;
  readonly idx: number;
  readonly ts: Date;
  /** Attributes after the change (all inode kinds except `delete`). */
  readonly stat?: FsStat;
  /** create/link/rename: the directory the entry is now in; delete/unlink: the one it was removed from. */
  readonly parent?: ParentRef;
  /** rename: the directory the entry left when it differs from `parent`. */
  readonly fromParent?: ParentRef;
  /** rename: the old path. */
  readonly from?: string;
  /**
   * rename: the two paths were exchanged (what renameat2 RENAME_EXCHANGE does): the inode `ino` is now at `path`,
   * and what was at `path` is now at `from`. Renames that went round in a cycle in one commit come out so.
   */
  readonly exchange?: boolean;
  /** create of a symlink: its target. */
  readonly target?: string;
  /** create of a character or block device: its device number (`{major, minor}`, as in the tree JSON). */
  readonly rdev?: DeviceNumber;
  /** write: byte range and (up to the inline limit) the bytes. */
  readonly offset?: number;
  readonly length?: number;
  readonly data?: Uint8Array;
  readonly dataOmitted?: boolean;
  /** truncate: sizes before and after. */
  readonly oldSize?: number;
  readonly size?: number;
  /** attr: what changed. xattrs changes are `{ "xattr.<name>": {old, new} }` with hex values, null when absent. */
  readonly changes?: Record<string, AttrChange>;
  /** snapshot: entries in the tree. */
  readonly files?: number;
  readonly dirs?: number;
  /** snapshot of a partitioned disk: the partition followed (Linux numbering; absent for a whole-disk file system). */
  readonly partition?: number;
  /** snapshot of a file system in an LVM logical volume: `vg/lv`. */
  readonly lv?: string;
  /** corrupt: what was wrong, where. */
  readonly corruptKind?: string;
  readonly message?: string;
  readonly block?: number;
  /** resync: why the disk was re-crawled. */
  readonly reason?: string;
}

/** The `Nats-Msg-Id` of an event: deterministic, so re-processing publishes no duplicates. */
export function eventMsgId(e: Pick<FsEvent, 'disk' | 'seq' | 'idx'>, tag?: string): string {
  return tag === undefined ? `${e.disk}:${e.seq}:${e.idx}` : `${e.disk}:${e.seq}:${e.idx}:${tag}`;
}
