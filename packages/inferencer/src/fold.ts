/**
 * Folding events over a tree: what a consumer that only reads the event stream knows. Starting from the tree
 * at the snapshot, every event applied in order gives the current tree (paths, types, attributes, targets, device
 * numbers and, for files whose every write carried its bytes, the content).
 */
import type { DeviceNumber, TreeEntry } from '@gammaray/ext4';
import { EventKind, type FsEvent, type FsStat } from './events.js';
import { MAX_FOLD_CONTENT_BYTES } from './limits.js';

/** A tree entry as folding keeps it: `content` while every byte of the file is known (up to MAX_FOLD_CONTENT_BYTES). */
export interface FoldEntry extends TreeEntry {
  content?: Uint8Array;
}

function withStat(e: FoldEntry, s: FsStat): void {
  e.mode = s.mode;
  e.uid = s.uid;
  e.gid = s.gid;
  e.size = s.size;
  e.nlink = s.nlink;
  e.mtime = s.mtime.sec;
  e.mtimeNsec = s.mtime.nsec;
  e.atime = s.atime.sec;
  e.atimeNsec = s.atime.nsec;
  e.ctime = s.ctime.sec;
  e.ctimeNsec = s.ctime.nsec;
}

function statAll(tree: Map<string, FoldEntry>, ino: number, s: FsStat): void {
  for (const e of tree.values()) if (e.ino === ino) withStat(e, s);
}

function resize(e: FoldEntry, size: number): void {
  if (!e.content) return;
  if (e.content.length === size) return;
  if (size > MAX_FOLD_CONTENT_BYTES) {
    delete e.content;
    return;
  }
  const c = new Uint8Array(size);
  c.set(e.content.subarray(0, Math.min(size, e.content.length)));
  e.content = c;
}

/** Whether an attr change value is a `{major, minor}` device number. */
function isDeviceNumber(v: unknown): v is DeviceNumber {
  if (v === null || typeof v !== 'object') return false;
  const d = v as Record<string, unknown>;
  return typeof d['major'] === 'number' && typeof d['minor'] === 'number';
}

/**
 * Applies `events` in order to `tree` (path -> entry; changed in place). Files created by events start with
 * empty known content; a `write` without its bytes makes the content unknown.
 */
export function foldEvents(tree: Map<string, FoldEntry>, events: Iterable<FsEvent>): Map<string, FoldEntry> {
  const under = (p: string, dir: string) => p.startsWith(dir === '/' ? '/' : `${dir}/`);
  for (const ev of events) {
    if (ev.parent) statAll(tree, ev.parent.ino, ev.parent.stat);
    if (ev.fromParent) statAll(tree, ev.fromParent.ino, ev.fromParent.stat);
    switch (ev.kind) {
      case EventKind.Create:
      case EventKind.Link: {
        const same = [...tree.values()].find((e) => e.ino === ev.ino);
        const e: FoldEntry = { path: ev.path, ino: ev.ino, type: ev.type as TreeEntry['type'], mode: 0, uid: 0, gid: 0, size: 0, nlink: 0, mtime: 0, mtimeNsec: 0, atime: 0, atimeNsec: 0, ctime: 0, ctimeNsec: 0 };
        if (ev.target !== undefined) e.target = ev.target;
        else if (same?.target !== undefined) e.target = same.target;
        if (ev.rdev !== undefined) e.rdev = { major: ev.rdev.major, minor: ev.rdev.minor };
        else if (same?.rdev !== undefined) e.rdev = same.rdev;
        if (e.type === 'file') e.content = ev.kind === EventKind.Create ? new Uint8Array(0) : same?.content;
        tree.set(ev.path, e);
        if (ev.stat) statAll(tree, ev.ino, ev.stat);
        if (ev.kind === EventKind.Create && ev.stat && ev.stat.size > 0 && e.type === 'file') {
          if (ev.stat.size <= MAX_FOLD_CONTENT_BYTES) e.content = new Uint8Array(ev.stat.size);
          else delete e.content;
        }
        break;
      }
      case EventKind.Delete:
      case EventKind.Unlink: {
        for (const p of [...tree.keys()]) if (p === ev.path || under(p, ev.path)) tree.delete(p);
        if (ev.stat) statAll(tree, ev.ino, ev.stat);
        break;
      }
      case EventKind.Rename: {
        const from = ev.from!; // ok: renames carry from
        if (ev.exchange) {
          // The two paths swap what they hold (neither is inside the other: the kernel refuses that).
          const swapped: FoldEntry[] = [];
          for (const [p, e] of [...tree]) {
            const to = p === from || under(p, from) ? ev.path + p.slice(from.length) : p === ev.path || under(p, ev.path) ? from + p.slice(ev.path.length) : undefined;
            if (to === undefined) continue;
            tree.delete(p);
            e.path = to;
            swapped.push(e);
          }
          for (const e of swapped) tree.set(e.path, e);
          if (ev.stat) statAll(tree, ev.ino, ev.stat);
          break;
        }
        const moved: FoldEntry[] = [];
        for (const [p, e] of [...tree]) {
          if (p === from || under(p, from)) {
            tree.delete(p);
            e.path = ev.path + p.slice(from.length);
            moved.push(e);
          }
        }
        for (const p of [...tree.keys()]) if (p === ev.path || under(p, ev.path)) tree.delete(p);
        for (const e of moved) tree.set(e.path, e);
        if (ev.stat) statAll(tree, ev.ino, ev.stat);
        break;
      }
      case EventKind.Write: {
        if (ev.stat) statAll(tree, ev.ino, ev.stat);
        for (const e of tree.values()) {
          if (e.ino !== ev.ino || !e.content) continue;
          if (ev.data === undefined) {
            delete e.content;
            continue;
          }
          const end = Math.max(e.size, ev.offset! + ev.data.length); // ok: writes carry offset
          if (e.content.length < end) resize(e, end);
          if (!e.content) continue; // grown past what is kept
          e.content.set(ev.data, ev.offset!); // ok
          resize(e, e.size);
        }
        break;
      }
      case EventKind.Truncate:
      case EventKind.Attr: {
        if (ev.stat) statAll(tree, ev.ino, ev.stat);
        const rdev = ev.changes?.['rdev']?.new;
        if (isDeviceNumber(rdev)) for (const e of tree.values()) if (e.ino === ev.ino) e.rdev = { major: rdev.major, minor: rdev.minor };
        for (const e of tree.values()) if (e.ino === ev.ino) resize(e, e.size);
        break;
      }
      default:
        break;
    }
  }
  return tree;
}
