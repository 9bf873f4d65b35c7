import { spawn } from 'node:child_process';

/** What a finished child process left behind. `stdout` stays raw bytes: tools print guest names verbatim. */
export interface RunResult {
  readonly stdout: Buffer;
  readonly stderr: string;
  readonly code: number;
}

/** Options for {@link run}. */
export interface RunOptions {
  /** Bytes written to the child's stdin, which is then closed. */
  readonly input?: string | Buffer;
  /** Extra environment on top of `process.env`. */
  readonly env?: Readonly<Record<string, string>>;
  /** Exit codes that count as success (default `[0]`); e2fsck uses 1 for "fixed something". */
  readonly okCodes?: readonly number[];
}

/** A tool exited with a code outside `okCodes`; the message carries its stderr so a failed build explains itself. */
export class ToolError extends Error {
  override readonly name = 'ToolError';

  constructor(
    readonly command: string,
    readonly args: readonly string[],
    readonly code: number | null,
    readonly stderr: string,
  ) {
    super(`${command} ${args.join(' ')} exited with ${code ?? 'a signal'}: ${stderr.trim().slice(0, 2000)}`);
  }
}

/**
 * Runs a tool without a shell and collects its whole output. We spawn instead of `execFile` so no `maxBuffer`
 * can truncate a listing of the 10,000-entry directory, and args are never re-parsed by a shell (names from the
 * tree contain spaces, newlines and invalid UTF-8).
 */
export function run(command: string, args: readonly string[], options: RunOptions = {}): Promise<RunResult> {
  const okCodes = options.okCodes ?? [0];
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      env: { ...process.env, ...options.env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (chunk: Buffer) => out.push(chunk));
    child.stderr.on('data', (chunk: Buffer) => err.push(chunk));
    child.on('error', reject);
    child.on('close', (code) => {
      const stderr = Buffer.concat(err).toString('utf8');
      if (code !== null && okCodes.includes(code)) {
        resolve({ stdout: Buffer.concat(out), stderr, code });
      } else {
        reject(new ToolError(command, args, code, stderr));
      }
    });
    child.stdin.on('error', () => {
      // The tool may exit before reading all input; its exit code tells the story.
    });
    child.stdin.end(options.input ?? '');
  });
}

/** Runs `fn` over `items` with at most `limit` calls in flight; results keep the input order. */
export async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    for (let i = next++; i < items.length; i = next++) out[i] = await fn(items[i] as T); // ok: i < items.length
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}
