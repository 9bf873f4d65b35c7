/**
 * What the Dockerfiles put in /opt/gammaray, made here the same way (`pnpm --filter @gammaray/cli deploy --prod
 * --legacy`, from the built workspace) and run with node: each service subcommand loads its service package and
 * that package's production dependencies from the pruned tree, as it would in the image, and refuses a bad
 * setting with its own message (exit 2). No Docker engine is needed.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT } from './invocation.js';

let work: string;
let out: string;

beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), 'gammaray-image-'));
  out = join(work, 'opt-gammaray');
  // The same command as the Dockerfiles' build stage. --prefer-offline: the store has every package, but a legacy
  // deploy resolves versions again, from pnpm's metadata cache, which a frozen-lockfile install (a fresh machine's)
  // does not fill: --offline failed there (ERR_PNPM_NO_OFFLINE_META); what is missing is fetched from the registry.
  execFileSync('pnpm', ['--filter', '@gammaray/cli', 'deploy', '--prod', '--legacy', '--prefer-offline', out], { cwd: ROOT, stdio: 'pipe' });
}, 120_000);

afterAll(() => rmSync(work, { recursive: true, force: true }));

function gammaray(args: readonly string[]): { status: number | null; stderr: string } {
  const r = spawnSync(process.execPath, [join(out, 'bin/gammaray.js'), ...args], { cwd: work, encoding: 'utf8', env: { PATH: process.env['PATH'] ?? '' }, timeout: 30_000 });
  return { status: r.status, stderr: r.stderr };
}

describe('the CLI as the images carry it (pnpm deploy --prod)', () => {
  it.runIf(existsSync(join(ROOT, 'services/view/src/proto.ts')))('gives the view its API files the way services/view/Dockerfile does', () => {
    const script = "console.log((await import(process.argv[1] + '/node_modules/@gammaray/service-view/dist/proto.js')).PROTO_ROOT)";
    const protoRoot = execFileSync(process.execPath, ['--input-type=module', '-e', script, out], { encoding: 'utf8' }).trim();
    if (!existsSync(protoRoot)) cpSync(join(ROOT, 'proto'), protoRoot, { recursive: true });
    const load = "const m = await import(process.argv[1] + '/node_modules/@gammaray/service-view/dist/proto.js'); console.log(Object.keys(m.loadViewPackage()).filter((k) => k.startsWith('gammaray.v1.')).join(','))";
    expect(execFileSync(process.execPath, ['--input-type=module', '-e', load, out], { encoding: 'utf8' })).toMatch(/gammaray\.v1\.View/);
  });

  it('has the entrypoint and the bundle, and no development dependencies', () => {
    expect(existsSync(join(out, 'bin/gammaray.js'))).toBe(true);
    expect(existsSync(join(out, 'dist/gammaray.cjs'))).toBe(true);
    expect(existsSync(join(out, 'node_modules/typescript'))).toBe(false);
    expect(existsSync(join(out, 'node_modules/vitest'))).toBe(false);
  });

  // A service whose package is still being written (no services/<name>/src/index.ts) is not in the CLI yet.
  it.each(
    (
      [
        ['capture', ['--disk', 'x'], /--disk must be ID=IMAGE/],
        ['inferencer', ['--replicas', '9'], /--replicas \(GAMMARAY_REPLICAS\) must be 1 to 5/],
        ['view', ['--grpc', 'bad'], /--grpc \(GAMMARAY_GRPC\) must be HOST:PORT/],
      ] as const
    ).filter(([s]) => existsSync(join(ROOT, 'services', s, 'src/index.ts'))),
  )('loads gammaray %s and its service package from the pruned tree', (service, args, message) => {
    const r = gammaray([service, ...args]);
    expect(r.stderr).toMatch(message);
    expect(r.status).toBe(2);
  });
});
