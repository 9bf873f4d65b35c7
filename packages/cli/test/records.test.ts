import { deserialize, serialize } from 'bson';
import { CorruptError, CorruptKind, toTreeEntry, type Ext4Inode } from '@gammaray/ext4';
import { describe, expect, it } from 'vitest';
import { JsonBytes } from '../src/json-bytes.js';
import { entryDoc, entryJson, writeEntryJson, type EntryFacts } from '../src/records.js';

function inode(over: Partial<Ext4Inode>): Ext4Inode {
  return {
    ino: 12, mode: 0o100644, type: 'file', uid: 1000, gid: 100, size: 5000, linksCount: 1, blocks512: 10, flags: 0x80000,
    generation: 7, fileAcl: 0, atime: { sec: 1_700_000_001, nsec: 1 }, mtime: { sec: -5, nsec: 999_999_999 },
    ctime: { sec: 2 ** 33, nsec: 0 }, crtime: { sec: 1_600_000_000, nsec: 42 }, dtime: 0, projid: undefined, extraIsize: 32,
    iBlock: new Uint8Array(60), raw: new Uint8Array(256), ...over,
  };
}

/** BSON round trip, binary as base64: what the JSON line must equal. */
function viaBson(f: EntryFacts): unknown {
  const plain = (v: unknown): unknown => {
    if (Buffer.isBuffer(v)) return v.toString('base64');
    if (Array.isArray(v)) return v.map(plain);
    if (v !== null && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, plain(x)]));
    return v;
  };
  return plain(deserialize(serialize(entryDoc(f)), { promoteBuffers: true }));
}

const device = new Uint8Array(60);
device.set([3, 1]); // old-style dev_t 0x0103: major 1, minor 3

const cases: [string, EntryFacts][] = [
  ['a file with xattrs, blocks and an awkward path', {
    partition: 1, path: '/d/"quoted"\\ back\nnew é \\xff', ino: 12, inode: inode({}), errors: [],
    xattrs: [{ name: 'user.bin', value: new Uint8Array([0, 0xff, 0x80]), valueSize: 3 }, { name: 'security.selinux', value: new Uint8Array(0), valueSize: 0 }],
    blocks: [{ logical: 0, physical: 1234, length: 2, initialized: true }, { logical: 9, physical: 99, length: 1, initialized: false }],
  }],
  ['a symlink with an invalid UTF-8 target', { partition: 0, path: '/l', ino: 13, inode: inode({ ino: 13, type: 'symlink', mode: 0o120777, size: 2 }), target: new Uint8Array([0x61, 0xff]), errors: [] }],
  ['a character device', { partition: 0, path: '/dev/null', ino: 14, inode: inode({ ino: 14, type: 'chr', mode: 0o20666, size: 0, iBlock: device, crtime: undefined }), errors: [] }],
  ['an unreadable entry', { partition: 0, path: '/x', ino: 99, inode: undefined, errors: [new CorruptError(CorruptKind.InodeChecksum, 'bad', { inode: 99 })] }],
];

describe('crawl records', () => {
  it.each(cases)('the byte-level writer prints exactly the JSON line: %s', (_name, f) => {
    const out = new JsonBytes();
    writeEntryJson(f, out);
    expect(Buffer.from(out.take()).toString('utf8')).toBe(`${entryJson(f)}\n`);
  });

  it('the byte-level writer matches JSON.stringify for awkward strings and numbers', () => {
    const names = ['plain', 'tab\there', 'quote"', 'back\\slash', 'é日本😀', '\u007f del', '\x00nul', 'a'.repeat(5000), ''];
    const nums = [0, 1, 9, 10, 99, 100, -1, -300000001, 2 ** 33, Number.MAX_SAFE_INTEGER, 4_294_967_294];
    const out = new JsonBytes();
    let want = '';
    for (const n of names) {
      out.str(n);
      want += JSON.stringify(n);
    }
    for (const n of nums) {
      out.num(n).raw(Buffer.from(','));
      want += `${JSON.stringify(n)},`;
    }
    expect(Buffer.from(out.take()).toString('utf8')).toBe(want);
  });

  it.each(cases)('JSON and BSON agree, field for field and in order: %s', (_name, f) => {
    const json = JSON.parse(entryJson(f)) as Record<string, unknown>;
    const bson = viaBson(f) as Record<string, unknown>;
    expect(json).toEqual(bson);
    expect(Object.keys(json)).toEqual(Object.keys(bson));
  });

  it.each(cases.filter(([, f]) => f.inode !== undefined))('carries the tree entry of CLI.md unchanged: %s', (_name, f) => {
    const json = JSON.parse(entryJson(f)) as Record<string, unknown>;
    const tree = toTreeEntry(f.path, f.inode!, { target: f.target }) as unknown as Record<string, unknown>; // ok: filtered
    const sub = Object.fromEntries(Object.keys(tree).map((k) => [k, json[k]]));
    expect(JSON.stringify(sub)).toBe(JSON.stringify(tree));
  });

  it('spells out devices, targets, crtime and errors', () => {
    const [file, link, dev, bad] = cases.map(([, f]) => JSON.parse(entryJson(f)) as Record<string, unknown>);
    expect(file).toMatchObject({ record: 'entry', partition: 1, crtime: 1_600_000_000, crtimeNsec: 42, flags: 0x80000, xattrs: [{ name: 'user.bin', value: 'AP+A' }, { name: 'security.selinux', value: '' }] });
    expect(link).toMatchObject({ target: 'a\\xff' });
    expect(link).not.toHaveProperty('blocks');
    expect(dev).toMatchObject({ rdev: { major: 1, minor: 3 } });
    expect(dev).not.toHaveProperty('crtime');
    expect(bad).toEqual({ record: 'entry', partition: 0, path: '/x', ino: 99, errors: [{ name: 'CorruptError', kind: 'InodeChecksum', message: 'InodeChecksum: bad (inode 99)' }] });
  });
});
