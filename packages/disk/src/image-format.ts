/**
 * Recognises disk image container formats by their signatures, so that the capture does not serve a qcow2 (or
 * VMDK, VDI, VHD, VHDX, QED) file's container bytes to a VM as if they were its disk: the VM would see no file
 * system, and its first write would corrupt the container.
 */

import type { BlockSource } from './block-source.js';

/** Bytes of an image's start that {@link probeImageFormat} looks at. */
export const PROBE_HEAD_BYTES = 512;
/** Bytes of an image's end it looks at (a fixed VHD's footer). */
export const PROBE_TAIL_BYTES = 512;

/** A container format found, and where its signature is. */
export interface ImageFormat {
  /** qemu-img's name of the format (`qemu-img convert -f NAME`). */
  readonly format: 'qcow' | 'qcow2' | 'qed' | 'vmdk' | 'vdi' | 'vhdx' | 'vpc';
  /** What was seen, for the message: e.g. `"QFI\xfb" at byte 0, version 3`. */
  readonly evidence: string;
}

const ascii = (b: Uint8Array, at: number, s: string): boolean => {
  if (at < 0 || at + s.length > b.length) return false;
  for (let i = 0; i < s.length; i++) if (b[at + i] !== s.charCodeAt(i)) return false;
  return true;
};

const be32 = (b: Uint8Array, at: number): number => ((b[at]! << 24) | (b[at + 1]! << 16) | (b[at + 2]! << 8) | b[at + 3]!) >>> 0; // ok: callers check the length
const le32 = (b: Uint8Array, at: number): number => (b[at]! | (b[at + 1]! << 8) | (b[at + 2]! << 16) | (b[at + 3]! << 24)) >>> 0; // ok: callers check the length

/**
 * The container format whose signature `head` (the image's first bytes, up to PROBE_HEAD_BYTES) or `tail` (its
 * last PROBE_TAIL_BYTES) holds; undefined for a raw disk. Signatures are those qemu's probes check (block/qcow2.c,
 * vmdk.c, vdi.c, vpc.c, vhdx.c, qed.c), so what qemu-img calls such a file is what this calls it.
 */
export function probeImageFormat(head: Uint8Array, tail?: Uint8Array): ImageFormat | undefined {
  if (head.length >= 8 && ascii(head, 0, 'QFI\xfb')) {
    const version = be32(head, 4);
    return { format: version >= 2 ? 'qcow2' : 'qcow', evidence: `"QFI\\xfb" at byte 0, version ${version}` };
  }
  if (ascii(head, 0, 'QED\0')) return { format: 'qed', evidence: '"QED\\0" at byte 0' };
  if (ascii(head, 0, 'KDMV')) return { format: 'vmdk', evidence: '"KDMV" at byte 0 (a sparse extent)' };
  if (ascii(head, 0, 'COWD')) return { format: 'vmdk', evidence: '"COWD" at byte 0 (an ESX sparse extent)' };
  if (ascii(head, 0, '# Disk DescriptorFile')) return { format: 'vmdk', evidence: '"# Disk DescriptorFile" at byte 0 (a descriptor)' };
  if (head.length >= 0x44 && le32(head, 0x40) === 0xbeda107f) return { format: 'vdi', evidence: 'signature 0xbeda107f at byte 64' };
  if (ascii(head, 0, 'vhdxfile')) return { format: 'vhdx', evidence: '"vhdxfile" at byte 0' };
  if (ascii(head, 0, 'conectix')) return { format: 'vpc', evidence: '"conectix" at byte 0 (a dynamic VHD)' };
  if (tail && tail.length >= 512 && ascii(tail, tail.length - 512, 'conectix')) return { format: 'vpc', evidence: '"conectix" in the last 512 bytes (a fixed VHD footer)' };
  return undefined;
}

/** {@link probeImageFormat} of a source's first and last bytes (a disk image, or the capture's disk). */
export async function probeSourceFormat(src: Pick<BlockSource, 'size' | 'read'>): Promise<ImageFormat | undefined> {
  const head = await src.read(0, Math.min(PROBE_HEAD_BYTES, src.size));
  const tailLength = Math.min(PROBE_TAIL_BYTES, src.size);
  return probeImageFormat(head, await src.read(src.size - tailLength, tailLength));
}
