/**
 * The README's main-job command, end to end: `bash scripts/demo.sh` installs what is missing (idempotent, so
 * quick here), builds a demo disk, runs `gammaray up` (embedded NATS, capture, inferencer, view with a FUSE
 * mount), boots a real Linux guest on the capture's NBD export, shows the event stream and the log file through
 * the mount side by side, stops everything and prints a summary — by itself. Checks what it shows against what
 * the guest did, and the final tree it prints against the kernel's view of the final image.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, expect, it } from 'vitest';
import { kernelTree } from '../oracle/kernel.js';

const REPO = fileURLToPath(new URL('../..', import.meta.url));
const LINES = 10;
let dir: string | undefined;

afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

it('bash scripts/demo.sh runs the whole pipeline against a real guest and ends by itself', async () => {
  dir = await mkdtemp(join(tmpdir(), 'gammaray-demo-test-'));
  const { stdout } = await promisify(execFile)('bash', ['scripts/demo.sh'], {
    cwd: REPO,
    env: { ...process.env, GAMMARAY_DEMO_DIR: dir, GAMMARAY_DEMO_LINES: String(LINES) },
    maxBuffer: 1 << 24,
    timeout: 600_000,
  });
  expect(stdout).toContain('gammaray is up.');
  expect(stdout).toMatch(/QEMU: +qemu-system-x86_64 \.\.\. -drive file=nbd:\/\/127\.0\.0\.1:\d+\/demo,format=raw,if=virtio/);
  // The live event stream: the crawl, the appends, and what the guest did to files.
  expect(stdout).toMatch(/\[event stream\] 1 \S+ snapshot files=4 dirs=8/);
  expect(stdout).toMatch(/\[event stream\] \d+ \S+ write \/var\/log\/app\.log \d+\+\d+/);
  expect(stdout).toMatch(/\[event stream\] \d+ \S+ create \/home\/alice\/new\.txt file/);
  expect(stdout).toMatch(/\[event stream\] \d+ \S+ rename \/home\/alice\/renamed\.txt <- \/home\/alice\/new\.txt/);
  expect(stdout).toMatch(/\[event stream\] \d+ \S+ delete \/home\/alice\/notes\/todo\.txt file/);
  expect(stdout).toMatch(/\[event stream\] \d+ \S+ attr \/srv\/report\.txt mode/);
  // The log file through the FUSE mount, line by line, whole (no zeros for data still on its way).
  const mountLines = stdout.split('\n').filter((l) => l.includes('[through the FUSE mount]')).map((l) => l.replace(/^.*\[through the FUSE mount\] /, ''));
  expect(mountLines).toEqual(['boot', ...Array.from({ length: LINES }, (_, i) => `log line ${i + 1}`)]);
  expect(stdout).toContain(`log lines seen through the FUSE mount: ${LINES} of ${LINES}`);
  expect(stdout).toMatch(/^events: \d+ \(.*create \d+.*\)$/m);
  // The final tree from the view equals the kernel's view of the final image.
  const printed = stdout.slice(stdout.indexOf('final tree from the view')).split('\n').filter((l) => l.startsWith('/'));
  const kernel = (await kernelTree(join(dir, 'demo.img'), { hash: false })).map((e) => e.path);
  expect(printed).toEqual(kernel);
  expect(printed).toContain('/home/alice/renamed.txt');
  expect(printed).not.toContain('/home/alice/notes/todo.txt');
  // Stopped cleanly: every service said so in its log, and the mount is gone.
  const upErr = await readFile(join(dir, 'up.err'), 'utf8');
  expect(upErr).toContain('stopped cleanly');
  expect(await readFile('/proc/mounts', 'utf8')).not.toContain(join(dir, 'mnt'));
}, 660_000);
