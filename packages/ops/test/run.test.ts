/**
 * runUntilSignal in a real process with real signals: a second signal while the service stops (a terminal's
 * Ctrl-C reaches a whole process group, then a supervisor sends SIGTERM) must not kill the stop half way.
 * Runs the built module (`pnpm build`), as the CLI does.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const RUN = fileURLToPath(new URL('../dist/run.js', import.meta.url));

describe('runUntilSignal', () => {
  it('finishes a slow stop when a second signal arrives during it, and exits 0', async () => {
    const script = `
      import { runUntilSignal } from ${JSON.stringify(RUN)};
      const log = { info: () => {}, warn: (o, m) => console.log('warn', o.signal, m) };
      const service = {
        start: async () => console.log('started'),
        stop: async () => { console.log('stopping'); await new Promise((r) => setTimeout(r, 800)); console.log('stopped'); },
      };
      const alive = setInterval(() => {}, 1000); // a service's sockets keep a real process alive
      process.exitCode = await runUntilSignal(service, log);
      clearInterval(alive);
    `;
    const child = spawn('node', ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (b: Buffer) => (out += b.toString()));
    child.stderr.on('data', (b: Buffer) => (out += b.toString()));
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => child.once('exit', (code, signal) => r({ code, signal })));
    const until = async (text: string) => {
      for (const deadline = Date.now() + 10_000; !out.includes(text); await new Promise((r) => setTimeout(r, 20))) {
        if (Date.now() > deadline) throw new Error(`no ${JSON.stringify(text)} in: ${out}`);
      }
    };
    await until('started');
    child.kill('SIGINT');
    await until('stopping');
    child.kill('SIGTERM');
    child.kill('SIGINT');
    expect(await exited).toEqual({ code: 0, signal: null });
    expect(out).toContain('stopped');
    expect(out).toContain('warn SIGTERM already stopping');
  });
});
