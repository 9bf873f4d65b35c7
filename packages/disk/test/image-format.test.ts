import { execFileSync } from 'node:child_process';
import { closeSync, fstatSync, mkdtempSync, openSync, readSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { PROBE_HEAD_BYTES, PROBE_TAIL_BYTES, probeImageFormat } from '../src/index.js';

const work = mkdtempSync(join(tmpdir(), 'gammaray-image-format-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** What attachDisk hands the probe: the file's first and last bytes. */
function probeFile(path: string): ReturnType<typeof probeImageFormat> {
  const fd = openSync(path, 'r');
  try {
    const size = fstatSync(fd).size;
    const head = Buffer.alloc(Math.min(PROBE_HEAD_BYTES, size));
    readSync(fd, head, 0, head.length, 0);
    const tail = Buffer.alloc(Math.min(PROBE_TAIL_BYTES, size));
    readSync(fd, tail, 0, tail.length, size - tail.length);
    return probeImageFormat(head, tail);
  } finally {
    closeSync(fd);
  }
}

describe('probeImageFormat', () => {
  // Files made by qemu-img itself, each format under the name qemu-img gives it.
  it.each([
    ['qcow2', [], 'qcow2'],
    ['qcow', [], 'qcow'],
    ['qed', [], 'qed'],
    ['vmdk', [], 'vmdk'],
    ['vmdk', ['-o', 'subformat=streamOptimized'], 'vmdk'],
    ['vdi', [], 'vdi'],
    ['vhdx', [], 'vhdx'],
    ['vpc', [], 'vpc'],
    ['vpc', ['-o', 'subformat=fixed'], 'vpc'],
  ] as const)('recognises a %s image made by qemu-img %j', (fmt, opts, want) => {
    const path = join(work, `disk-${fmt}-${opts.length}.${fmt}`);
    execFileSync('qemu-img', ['create', '-q', '-f', fmt, ...opts, path, '16M']);
    const found = probeFile(path);
    expect(found?.format).toBe(want);
    expect(found?.evidence).toMatch(/byte|bytes/);
  });

  it('leaves raw disks alone: an ext4 file system, a partitioned disk, zeros, a tiny file', () => {
    const ext4 = join(work, 'fs.img');
    execFileSync('mkfs.ext4', ['-q', '-F', ext4, '8M']);
    expect(probeFile(ext4)).toBeUndefined();
    const parted = join(work, 'parted.img');
    execFileSync('qemu-img', ['create', '-q', '-f', 'raw', parted, '16M']);
    execFileSync('sfdisk', ['-q', parted], { input: 'label: gpt\n,8M\n,\n' });
    expect(probeFile(parted)).toBeUndefined();
    const zeros = join(work, 'zeros.img');
    writeFileSync(zeros, Buffer.alloc(1 << 20));
    expect(probeFile(zeros)).toBeUndefined();
    const tiny = join(work, 'tiny.img');
    writeFileSync(tiny, Buffer.from('QFI'));
    expect(probeFile(tiny)).toBeUndefined();
    expect(probeImageFormat(new Uint8Array(0))).toBeUndefined();
  });

  it('says which qcow version and where the signature is', () => {
    const head = Buffer.alloc(512);
    head.write('QFI\xfb', 0, 'latin1');
    head.writeUInt32BE(3, 4);
    expect(probeImageFormat(head)).toEqual({ format: 'qcow2', evidence: '"QFI\\xfb" at byte 0, version 3' });
    const tail = Buffer.alloc(512);
    tail.write('conectix', 0, 'latin1');
    expect(probeImageFormat(Buffer.alloc(512), tail)?.format).toBe('vpc');
  });
});
