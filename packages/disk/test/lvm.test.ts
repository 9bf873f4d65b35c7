// LVM2 physical volumes written by the real lvm2 tools (on a loop device, without device-mapper), read back and
// checked against what `lvs` reports; the text parser on its own; damage gives CorruptError, never anything else.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CorruptError, MemoryBlockSource, parseLvmText, readLvmPv } from '../src/index.js';
import { prng } from './builders.js';

const HAVE_LVM = (() => {
  try {
    execFileSync('pvcreate', ['--version'], { stdio: 'ignore' });
    return process.getuid?.() === 0;
  } catch {
    return false;
  }
})();

const VG = `utest${process.pid}`;
let work: string;
/** The PV's bytes as lvm2 left them. */
let pv: Uint8Array;
/** `lvs` of the VG: name -> [first PV extent, extents] per segment. */
let expected: Map<string, [number, number][]>;
let extentSize: number;
let peStart: number;

function lvm(dev: string, args: string[]): string {
  const config = `devices { obtain_device_list_from_udev=0 filter=["a|^${dev}$|","r|.*|"] } backup { backup=0 archive=0 }`;
  const [cmd, ...rest] = args;
  return execFileSync(cmd!, ['--config', config, ...rest], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }); // ok: a command is given
}

beforeAll(() => {
  if (!HAVE_LVM) return;
  work = mkdtempSync(join(tmpdir(), 'gammaray-lvm-unit-'));
  const img = join(work, 'pv.img');
  writeFileSync(img, '');
  truncateSync(img, 64 * 1024 * 1024);
  const dev = execFileSync('losetup', ['-f', '--show', img], { encoding: 'utf8' }).trim();
  try {
    lvm(dev, ['pvcreate', '-q', dev]);
    lvm(dev, ['vgcreate', '-q', '-s', '1m', VG, dev]);
    const lv = (name: string, size: string) => lvm(dev, ['lvcreate', '-q', '--driverloaded', 'n', '-an', '-Zn', '-L', size, '-n', name, VG]);
    lv('a', '8m');
    lv('b', '4m');
    lv('c', '2m');
    // a grows while c sits after it: a second segment elsewhere (not one run: left out). b grows in place.
    lvm(dev, ['lvextend', '-q', '--driverloaded', 'n', '-L', '+2m', `${VG}/a`]);
    lvm(dev, ['lvremove', '-q', '--driverloaded', 'n', '-y', `${VG}/c`]);
    lv('d', '3m');
    peStart = Number(lvm(dev, ['pvs', '--noheadings', '--units', 'b', '--nosuffix', '-o', 'pe_start', dev]).trim());
    extentSize = Number(lvm(dev, ['vgs', '--noheadings', '--units', 'b', '--nosuffix', '-o', 'vg_extent_size', VG]).trim());
    expected = new Map();
    for (const line of lvm(dev, ['lvs', '--driverloaded', 'n', '--noheadings', '-o', 'lv_name,seg_pe_ranges', VG]).trim().split('\n')) {
      const m = /(\S+)\s+\S+:(\d+)-(\d+)/.exec(line.trim());
      if (!m) continue;
      const segs = expected.get(m[1]!) ?? [];
      segs.push([Number(m[2]), Number(m[3]) - Number(m[2]) + 1]);
      expected.set(m[1]!, segs);
    }
  } finally {
    execFileSync('losetup', ['-d', dev]);
  }
  pv = new Uint8Array(readFileSync(img));
});

afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

describe.skipIf(!HAVE_LVM)('readLvmPv on a PV made by lvm2', () => {
  it('finds the VG and every LV stored as one run, where lvs says, and leaves out the one in two places', async () => {
    const r = await readLvmPv(new MemoryBlockSource(pv));
    expect(r).toMatchObject({ vg: VG, dataStart: peStart, extentSize });
    // What lvs reports, as one run each: b grew in place (two adjacent segments or one), d is one; a is split.
    const runs = [...expected].filter(([, segs]) => segs.every((s, k) => k === 0 || s[0] === segs[k - 1]![0] + segs[k - 1]![1])); // ok: k >= 1
    expect(expected.get('a')?.length).toBe(2);
    expect(r!.lvs.map((l) => l.name).sort()).toEqual(runs.map(([n]) => `${VG}/${n}`).sort()); // ok: a PV was read
    for (const [name, segs] of runs) {
      const lv = r!.lvs.find((l) => l.name === `${VG}/${name}`); // ok: as above
      expect(lv, name).toEqual({ name: `${VG}/${name}`, start: peStart + segs[0]![0] * extentSize, size: segs.reduce((n, s) => n + s[1], 0) * extentSize }); // ok: a segment
    }
  });

  it('refuses damage with CorruptError: the label, the metadata area header, the text', async () => {
    const damaged = (at: number) => {
      const copy = pv.slice();
      copy[at] = copy[at]! ^ 0x20; // ok: in range
      return readLvmPv(new MemoryBlockSource(copy));
    };
    await expect(damaged(512 + 40)).rejects.toThrow(/label checksum/); // the pv_header, covered by the label's CRC
    await expect(damaged(4096 + 30)).rejects.toThrow(/metadata area header checksum/);
    // The current text is where the header's first raw_locn says (older copies are in the area too).
    const text = Number(new DataView(pv.buffer, pv.byteOffset).getBigUint64(4096 + 40, true));
    expect(new TextDecoder('latin1').decode(pv.subarray(4096 + text, 4096 + text + 64))).toContain(`${VG} {`);
    await expect(damaged(4096 + text + 2)).rejects.toThrow(/metadata text checksum/);
  });

  it('never throws anything but CorruptError for random damage to the PV\'s first MiB (400 cases)', async () => {
    const r = prng(7);
    for (let k = 0; k < 400; k++) {
      const copy = pv.slice(0, 2 * 1024 * 1024);
      for (let n = 1 + Math.floor(r() * 8); n > 0; n--) copy[Math.floor(r() * 8192)] = Math.floor(r() * 256);
      try {
        await readLvmPv(new MemoryBlockSource(copy));
      } catch (err) {
        expect(err, `case ${k}`).toBeInstanceOf(CorruptError);
      }
    }
  });
});

describe('readLvmPv without a PV', () => {
  it('is undefined for a disk without an LVM2 label', async () => {
    expect(await readLvmPv(new MemoryBlockSource(new Uint8Array(1 << 20)))).toBeUndefined();
    expect(await readLvmPv(new MemoryBlockSource(new Uint8Array(100)))).toBeUndefined();
  });
});

describe('parseLvmText', () => {
  it('reads sections, key = value pairs, strings with escapes, numbers, arrays and comments', () => {
    const doc = parseLvmText(`# comment
vg {
  id = "abc-def"   # trailing comment
  seqno = 12
  status = ["READ", "WRITE"]
  nested { deeper { x = -3 s = "a \\"quoted\\" word" } }
  stripes = [
    "pv0", 0
  ]
}
contents = "Text Format Volume Group"
`);
    expect(doc).toEqual({
      vg: { id: 'abc-def', seqno: 12, status: ['READ', 'WRITE'], nested: { deeper: { x: -3, s: 'a "quoted" word' } }, stripes: ['pv0', 0] },
      contents: 'Text Format Volume Group',
    });
  });

  it.each([
    ['vg { id = "x" ', /unterminated section/],
    ['id = "x', /unterminated string/],
    ['id = ', /expected a value/],
    ['}', /unexpected }/],
    ['a b', /expected = or \{/],
    ['x = [1 2]', /expected , or \]/],
    ['x = ' + '['.repeat(40) + ']'.repeat(40), /nest too deeply/],
    ['a '.repeat(0) + 'a {'.repeat(40) + '}'.repeat(40), /nest too deeply/],
  ])('refuses %j', (text, msg) => {
    expect(() => parseLvmText(text)).toThrow(CorruptError);
    expect(() => parseLvmText(text)).toThrow(msg);
  });
});
