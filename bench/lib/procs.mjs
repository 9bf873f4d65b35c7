// Child processes for the bench scripts: every child is tracked and killed on any exit (also on failure and
// Ctrl-C), directories registered with removeOnExit are deleted, a child started as its own process group (the
// guest harness and its QEMU) is killed as a group.
import { spawn } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync, rmSync } from 'node:fs';
import { connect as netConnect, createServer } from 'node:net';

/** Children still running. */
export const children = new Set();
/** Directories removed on any exit: a run's temp dir, a half-made recording. */
export const removeOnExit = new Set();

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export function killChild(c, signal) {
  try {
    if (c.group) process.kill(-c.pid, signal);
    else c.kill(signal);
  } catch {
    // already gone
  }
}

/** Installs the exit and signal handlers; `note` prints a progress line. */
export function installExitHandlers(note) {
  process.on('exit', () => {
    for (const c of children) killChild(c, 'SIGKILL');
    for (const d of removeOnExit) rmSync(d, { recursive: true, force: true });
  });
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
    process.on(sig, () => {
      note(`${sig}: stopping`);
      void exitAfterChildren(130);
    });
  }
}

/** Kills every child and waits (briefly) until they are gone, so none is left writing into a temp dir; then exits. */
export async function exitAfterChildren(code) {
  const live = [...children];
  for (const c of live) killChild(c, 'SIGKILL');
  await Promise.race([Promise.all(live.map((c) => c.done)), sleep(5_000)]);
  process.exit(code);
}

/**
 * Spawns a tracked child. stdout/stderr go to `logFile` (appended), or are captured (`capture`), or stderr is
 * passed through with a prefix (`forwardStderr`). `group`: its own process group, killed as a whole.
 * `child.done` resolves to `{code, signal, error?, stdout, stderr}`.
 */
export function start(cmd, args, { logFile, capture = false, forwardStderr, group = false, env, onStdout } = {}) {
  const fd = logFile !== undefined ? openSync(logFile, 'a') : 'ignore';
  const out = capture || onStdout ? 'pipe' : fd;
  const err = capture || forwardStderr ? 'pipe' : fd;
  const child = spawn(cmd, args, { stdio: ['ignore', out, err], detached: group, env: env ?? process.env });
  if (typeof fd === 'number') closeSync(fd);
  child.group = group;
  children.add(child);
  let stdout = '';
  let stderr = '';
  child.stdout?.setEncoding('utf8').on('data', (d) => {
    if (capture) stdout += d;
    onStdout?.(d);
  });
  let partial = '';
  child.stderr?.setEncoding('utf8').on('data', (d) => {
    stderr += d;
    if (forwardStderr) {
      partial += d;
      const lines = partial.split('\n');
      partial = lines.pop();
      for (const l of lines) process.stderr.write(`${forwardStderr}${l}\n`);
    }
  });
  child.done = new Promise((resolve) => {
    child.once('error', (e) => {
      children.delete(child);
      resolve({ code: null, signal: null, error: e, stdout, stderr });
    });
    child.once('close', (code, signal) => {
      children.delete(child);
      resolve({ code, signal, stdout, stderr });
    });
  });
  return child;
}

/** Runs a client to completion; throws `new Failure(message)` with its output unless it exits 0. */
export async function run(cmd, args, Failure = Error) {
  const r = await start(cmd, args, { capture: true }).done;
  if (r.error) throw new Failure(`${cmd} could not run: ${r.error.message}`);
  if (r.code !== 0) throw new Failure(`${cmd} ${args.join(' ')} exited ${r.code ?? r.signal}:\n${r.stderr}${r.stdout}`.trim());
  return r;
}

/** SIGTERM, then SIGKILL after `timeoutMs`; resolves to how it ended. */
export async function stop(child, timeoutMs) {
  if (child.exitCode !== null || child.signalCode !== null) return child.done;
  killChild(child, 'SIGTERM');
  const timer = setTimeout(() => killChild(child, 'SIGKILL'), timeoutMs);
  const r = await child.done;
  clearTimeout(timer);
  return r;
}

/** A TCP port that was free a moment ago on 127.0.0.1. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/** Resolves true once something on the port sends data starting with `expect` (or, without `expect`, accepts). */
export function probe(port, expect) {
  return new Promise((resolve) => {
    const sock = netConnect({ host: '127.0.0.1', port });
    const done = (ok) => {
      sock.destroy();
      resolve(ok);
    };
    sock.setTimeout(500, () => done(false));
    sock.once('error', () => done(false));
    if (expect === undefined) sock.once('connect', () => done(true));
    else sock.once('data', (d) => done(d.toString('latin1').startsWith(expect)));
  });
}

/** The median of the finite values of `xs` (NaN when there are none). */
export function median(xs) {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** A readiness check for {@link waitFor}: whether `file` (a child's log) contains `text` yet. */
export function logHas(file, text) {
  return async () => existsSync(file) && readFileSync(file, 'utf8').includes(text);
}

/**
 * Polls `ready` (an async predicate) until true; throws `Failure` when `child` exits first or after `timeoutMs`,
 * with the tail of `logFile` when given.
 */
export async function waitFor(what, child, ready, timeoutMs, logFile, Failure = Error) {
  const tail = () => (logFile && existsSync(logFile) ? `:\n${readFileSync(logFile, 'utf8').slice(-4000)}` : '');
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Failure(`${what} exited (${child.exitCode ?? child.signalCode}) while starting${tail()}`);
    if (await ready()) return;
    if (Date.now() > deadline) throw new Failure(`${what} not ready within ${timeoutMs / 1000} s${tail()}`);
    await sleep(200);
  }
}
