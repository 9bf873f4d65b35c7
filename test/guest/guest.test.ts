import { createHash } from 'node:crypto';
import { mkdtemp, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { debugfsTree } from '../oracle/debugfs.js';
import { run } from '../oracle/exec.js';
import { buildInitramfs, cpioNewc, workloadArchive } from './build-initramfs.js';
import { GUEST_EXIT, runGuest } from './guest.js';
import type { GuestResult } from './guest.js';
import { freePort, serveImage } from './qemu-nbd.js';

/** Exercises create, overwrite, rename, unlink and append-over-time (several journal commits). */
const FS_WORKLOAD = `set -e
mkdir -p work/sub
echo hello > work/a.txt
dd if=/dev/urandom of=work/big.bin bs=64k count=16 2>/dev/null
printf 'line1\\nline2\\n' > work/b.txt
mv work/b.txt work/sub/renamed.txt
echo doomed > work/gone.txt
rm work/gone.txt
for i in 1 2 3; do
  echo "tick $i" >> work/log.txt
  sleep 1
done
sha256sum work/a.txt work/big.bin work/sub/renamed.txt work/log.txt | sed 's/^/SHA /'
exit 0
`;

const sha256 = (text: string): string => createHash('sha256').update(text).digest('hex');

/** `SHA <hex>  <path>` lines the workload printed, as path -> hex. */
function guestHashes(consoleText: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const m of consoleText.matchAll(/^SHA ([0-9a-f]{64}) {2}(\S+)\r?$/gm)) out.set(`/${m[2]}`, m[1] as string); // ok: group 1 always matches
  return out;
}

/** Console attached to a failed expectation, so a broken boot explains itself. */
function explain(result: GuestResult): string {
  return `outcome=${result.outcome} status=${result.status}\n--- console ---\n${result.console}\n--- qemu stderr ---\n${result.stderr}`;
}

const IMAGE_BYTES = 64 * 1024 * 1024;

let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'gammaray-guest-test-'));
  await buildInitramfs(); // once, before the clocks of the boot tests start
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function freshImage(name: string): Promise<string> {
  const image = join(dir, name);
  await writeFile(image, '');
  await truncate(image, IMAGE_BYTES);
  await run('mkfs.ext4', ['-q', '-F', image]);
  return image;
}

describe('initramfs archives', () => {
  it('writes a workload cpio that cpio(1) extracts byte for byte', async () => {
    const script = 'echo "ünïcode"\nexit 0\n';
    const { stdout } = await run('cpio', ['-i', '--quiet', '--to-stdout', 'workload'], { input: workloadArchive(script) });
    expect(stdout.toString('utf8')).toBe(script);
  });

  it('lists directories, symlinks and device nodes in newc order', async () => {
    const archive = cpioNewc([
      { type: 'dir', path: 'bin' },
      { type: 'symlink', path: 'bin/sh', target: 'busybox' },
      { type: 'chardev', path: 'dev/console', major: 5, minor: 1 },
    ]);
    const { stdout } = await run('cpio', ['-t', '--quiet', '-v'], { input: archive });
    const lines = stdout.toString('utf8').trim().split('\n');
    expect(lines).toHaveLength(3);
    expect(lines[1]).toMatch(/^l.* bin\/sh -> busybox$/);
    expect(lines[2]).toMatch(/^c.* 5,\s+1 .*dev\/console$/);
  });
});

describe('runGuest on a qemu-nbd export', () => {
  it('runs a file system workload whose files the host then reads back intact', async () => {
    const image = await freshImage('fs.img');
    const server = await serveImage(image);
    let result: GuestResult;
    try {
      result = await runGuest({ nbd: server.url, workload: FS_WORKLOAD, timeoutMs: 45_000 });
    } finally {
      await server.stop(); // every write qemu-nbd accepted is in the file once it has exited
    }
    expect(result.status, explain(result)).toBe(0);
    expect(result.outcome).toBe('exited');

    // The guest unmounted cleanly: e2fsck finds nothing to fix and the journal needs no replay.
    await run('e2fsck', ['-fn', image]);

    const tree = new Map((await debugfsTree(image, { hash: true })).map((e) => [e.path, e]));
    const hashes = guestHashes(result.console);
    expect([...hashes.keys()].sort()).toEqual(['/work/a.txt', '/work/big.bin', '/work/log.txt', '/work/sub/renamed.txt']);
    for (const [path, hex] of hashes) expect(tree.get(path)?.sha256, path).toBe(hex);
    expect(tree.get('/work/a.txt')?.sha256).toBe(sha256('hello\n'));
    expect(tree.get('/work/sub/renamed.txt')?.sha256).toBe(sha256('line1\nline2\n'));
    expect(tree.get('/work/log.txt')?.sha256).toBe(sha256('tick 1\ntick 2\ntick 3\n'));
    expect(tree.get('/work/big.bin')?.size).toBe(16 * 64 * 1024);
    expect(tree.has('/work/b.txt')).toBe(false);
    expect(tree.has('/work/gone.txt')).toBe(false);
  });

  it('returns the workload exit status 3', async () => {
    const image = await freshImage('exit3.img');
    await using server = await serveImage(image);
    const result = await runGuest({ nbd: server.url, workload: 'echo about to fail\nexit 3\n', timeoutMs: 30_000 });
    expect(result.status, explain(result)).toBe(3);
    expect(result.outcome).toBe('exited');
    expect(result.console).toContain('about to fail');
  });

  it('returns 124 and kills QEMU when the workload outlives the timeout', async () => {
    const image = await freshImage('timeout.img');
    await using server = await serveImage(image);
    const result = await runGuest({ nbd: server.url, workload: 'sleep 600\n', timeoutMs: 3_000 });
    expect(result.status).toBe(GUEST_EXIT.timeout);
    expect(result.outcome).toBe('timeout');
    expect(result.durationMs).toBeLessThan(10_000);
  });

  it('returns 125 when QEMU cannot reach the NBD server', async () => {
    const port = await freePort();
    const result = await runGuest({ nbd: `nbd://127.0.0.1:${port}`, workload: 'exit 0\n', timeoutMs: 30_000 });
    expect(result.status).toBe(GUEST_EXIT.noReport);
    expect(result.outcome).toBe('no-report');
    expect(result.stderr).toMatch(/Failed to connect|Connection refused/);
  });
});
