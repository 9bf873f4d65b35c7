/**
 * The README's main-job command, end to end: `bash scripts/demo.sh` installs what is missing (idempotent, so
 * quick here), builds the demo image and crawls it. Checks the tree it prints, the file it cats and the BSON it
 * writes.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { deserialize } from 'bson';
import { afterAll, expect, it } from 'vitest';

const REPO = fileURLToPath(new URL('../..', import.meta.url));
let dir: string | undefined;

afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

it('bash scripts/demo.sh builds a demo image and prints its tree, a stat, a file and a crawl summary', async () => {
  dir = await mkdtemp(join(tmpdir(), 'gammaray-demo-test-'));
  const { stdout } = await promisify(execFile)('bash', ['scripts/demo.sh'], { cwd: REPO, env: { ...process.env, GAMMARAY_DEMO_DIR: dir }, maxBuffer: 1 << 24 });
  expect(stdout).toMatch(/^lrwxrwxrwx +1 +0 +0 +28 \S+ \/etc\/motd -> \.\.\/home\/alice\/notes\/todo\.txt$/m);
  expect(stdout).toMatch(/^-rw-r--r-- +1 +0 +0 +8388608 \S+ \/var\/sparse\.img$/m);
  expect(stdout).toContain('Xattr: user.owner="alice"');
  expect(stdout).toContain('hello from the guest');
  expect(stdout).toMatch(/13 entries: 4 files, 8 directories, 1 symlink/);
  const bson = await readFile(join(dir, 'demo.bson'));
  const first = deserialize(bson.subarray(0, bson.readInt32LE(0)));
  expect(first).toMatchObject({ record: 'volume', kind: 'ext4', volumeName: 'demo' });
}, 300_000);
