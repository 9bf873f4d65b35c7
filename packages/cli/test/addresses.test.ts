/** The HOST:PORT and NATS URL flags of the clients and of `up`, checked before anything connects or starts. */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, describe, expect, it } from 'vitest';
import { main } from '../src/main.js';

const dir = mkdtempSync(join(tmpdir(), 'gammaray-addresses-unit-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Runs the CLI in this process: its exit status and stderr. */
async function gammaray(...args: string[]): Promise<{ code: number; stderr: string }> {
  let stderr = '';
  const sink = (onText: (s: string) => void) => new Writable({ write: (chunk: Buffer, _enc, cb) => (onText(chunk.toString()), cb()) });
  const code = await main(['node', 'gammaray', ...args], { stdout: sink(() => {}), stderr: sink((s) => (stderr += s)) });
  return { code, stderr };
}

/** Exit 2 and one `gammaray:` line on stderr matching `pattern`. */
function expectUserError(r: { code: number; stderr: string }, pattern: RegExp): void {
  expect(r.code).toBe(2);
  expect(r.stderr.trimEnd().split('\n')).toHaveLength(1);
  expect(r.stderr).toMatch(/^gammaray: /);
  expect(r.stderr.trimEnd()).toMatch(pattern);
}

describe('address flags', () => {
  it('tree refuses a --grpc port outside 1-65535 in one line, exit 2', async () => {
    expectUserError(await gammaray('tree', 'vm1', '--grpc', '127.0.0.1:99999'), /--grpc must be HOST:PORT .*port 1 to 65535 \(e\.g\. 127\.0\.0\.1:50051\), got "127\.0\.0\.1:99999"$/);
    expectUserError(await gammaray('tree', 'vm1', '--grpc', '127.0.0.1:0'), /--grpc must be HOST:PORT/);
  });

  it('follow refuses a --nats URL with a bad port in one line, exit 2', async () => {
    expectUserError(await gammaray('follow', 'vm1', '--nats', 'nats://127.0.0.1:99999'), /--nats \(GAMMARAY_NATS\) must be a NATS URL .*the port of nats:\/\/127\.0\.0\.1:99999 is not 1 to 65535/);
  });

  it('up gives the example of the flag it refuses: 50051 for --grpc, 10809 for --listen', async () => {
    const image = join(dir, 'vm1.img');
    writeFileSync(image, Buffer.alloc(4096));
    expectUserError(await gammaray('up', '--image', image, '--grpc', '1.2.3.4:99999'), /--grpc must be HOST:PORT, the port 1 to 65535 \(e\.g\. 127\.0\.0\.1:50051\), got "1\.2\.3\.4:99999"$/);
    expectUserError(await gammaray('up', '--image', image, '--listen', '127.0.0.1:70000'), /--listen must be HOST:PORT, the port 1 to 65535 \(e\.g\. 127\.0\.0\.1:10809\)/);
    expectUserError(await gammaray('up', '--image', image, '--nats', 'nats://127.0.0.1:99999'), /--nats must be the URL of a running NATS server .*port of nats:\/\/127\.0\.0\.1:99999 is not 1 to 65535/);
  });
});
