/**
 * Hostile NBD sessions for abuse tests: random bytes, truncated headers, huge lengths, unknown options and
 * commands, reads past the end, stalls. Scenarios that get as far as transmission use export `scratch`
 * (`busyExport` is opened to test the exclusive-writer path).
 */
import { randomBytes, randomInt } from 'node:crypto';
import { connect } from 'node:net';

const MiB = 1 << 20;

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0);
  return b;
}
function option(opt: number, data: Buffer, declared = data.length): Buffer {
  return Buffer.concat([Buffer.from('IHAVEOPT', 'latin1'), u32(opt), u32(declared), data]);
}
function goData(name: string): Buffer {
  const n = Buffer.from(name);
  return Buffer.concat([u32(n.length), n, Buffer.from([0, 1, 0, 3])]);
}
function request(type: number, offset: bigint, length: number, flags = 0): Buffer {
  const h = Buffer.alloc(28);
  h.writeUInt32BE(0x25609513, 0);
  h.writeUInt16BE(flags, 4);
  h.writeUInt16BE(type, 6);
  h.writeBigUInt64BE(BigInt(randomInt(2 ** 47)), 8);
  h.writeBigUInt64BE(offset, 16);
  h.writeUInt32BE(length >>> 0, 24);
  return h;
}
const FLAGS = u32(3);
const GO_SCRATCH = Buffer.concat([FLAGS, option(7, goData('scratch'))]);
let busyExport = 'good';

/** One hostile session's bytes, by scenario number. */
function hostileBytes(scenario: number): Buffer {
  const junk = (): Buffer => randomBytes(randomInt(1, 300));
  switch (scenario) {
    case 0: return junk();
    case 1: return Buffer.concat([FLAGS, junk()]);
    case 2: return Buffer.concat([FLAGS, option(randomInt(1, 12), Buffer.alloc(0), 0xffff_ffff)]);
    case 3: return Buffer.concat([FLAGS, option(7, goData('scratch')).subarray(0, randomInt(1, 20))]);
    case 4: return Buffer.concat([FLAGS, option(randomInt(12, 2 ** 32), randomBytes(randomInt(0, 100))), option(8, Buffer.alloc(0)), option(2, Buffer.alloc(0))]);
    case 5: return Buffer.concat([GO_SCRATCH, junk()]);
    case 6: return Buffer.concat([GO_SCRATCH, request(0, 0n, 512).subarray(0, randomInt(1, 28))]);
    case 7: return Buffer.concat([GO_SCRATCH, request(1, 0n, 0xffff_ffff - randomInt(100))]);
    case 8: return Buffer.concat([GO_SCRATCH, request(1, 0n, 16 * MiB), randomBytes(randomInt(1, 256 * 1024))]);
    case 9: return Buffer.concat([GO_SCRATCH, request(0, BigInt(16 * MiB), 512), request(randomInt(9, 65536), 0n, 512), request(0, 2n ** 63n, 4096), request(5, 0n, 512)]);
    case 10: return Buffer.concat([GO_SCRATCH, ...Array.from({ length: 300 }, () => request(0, BigInt(randomInt(0, 32) * 65536), 65536))]);
    case 11: return Buffer.concat([FLAGS, option(7, goData(busyExport))]); // busy, then stalls
    case 12: return Buffer.concat([FLAGS, ...Array.from({ length: 300 }, () => option(3, Buffer.alloc(0)))]);
    default: return Buffer.alloc(0); // slowloris: say nothing
  }
}

/** Send a hostile session and hang up after a short random while (or when the server hangs up). */
export function hostileSession(port: number, busy = 'good'): Promise<void> {
  busyExport = busy;
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    s.on('error', () => {});
    s.on('data', () => {}); // read and drop replies (scenario 10 also tests a peer that never reads: see pause below)
    const scenario = randomInt(0, 14);
    if (scenario === 10) s.pause();
    s.on('connect', () => {
      const b = hostileBytes(scenario);
      // Split at a random point so the server sees the bytes in two segments.
      const cut = randomInt(0, b.length + 1);
      s.write(b.subarray(0, cut));
      setTimeout(() => s.write(b.subarray(cut)), randomInt(0, 5));
    });
    const t = setTimeout(() => s.destroy(), randomInt(5, 150));
    s.on('close', () => {
      clearTimeout(t);
      resolve();
    });
  });
}

