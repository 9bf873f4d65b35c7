import type { NatsAuthFlags, WatchedEvent, WatchFrom } from '@gammaray/service-view';
import { natsUrlProblem } from '@gammaray/ops/nats-url';
import { STREAM_EVENTS } from '@gammaray/wire';
import { ExitCode, RuntimeFailure, UserError } from '../errors.js';
import { escapeControls, type Terminal } from '../output.js';

/** Options of `gammaray follow`. */
export interface FollowCliOptions extends NatsAuthFlags {
  readonly nats: string | undefined;
  /** `--kinds k1,k2`. */
  readonly kinds: string | undefined;
  readonly json: boolean;
  readonly fromStart: boolean;
  readonly fromSeq: string | undefined;
  /** `--since TIME`: ISO 8601, or a duration ago (`10m`). */
  readonly since?: string | undefined;
}

const DURATION_UNIT_MS: Record<string, number> = { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** The time `--since` names: an ISO 8601 date-time, or `<n><s|m|h|d>` before `now`; undefined if it is neither. */
export function parseSince(text: string, now = Date.now()): Date | undefined {
  const ago = /^(\d{1,9})([smhd])$/.exec(text);
  if (ago) return new Date(now - Number(ago[1]) * DURATION_UNIT_MS[ago[2]!]!); // ok: the unit is one of the keys
  if (!/^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?)?(Z|[+-]\d{2}:?\d{2})?$/.test(text)) return undefined;
  const t = new Date(text);
  return Number.isFinite(t.getTime()) ? t : undefined;
}

type Event = WatchedEvent['event'];

/**
 * `gammaray follow DISK [GLOB]`: prints the disk's file-level events from stream GAMMARAY_EVENTS as they
 * arrive, one line each (with --json one JSON object each), until SIGINT/SIGTERM (exit 0). Reads NATS
 * directly with an ordered consumer: no view needed.
 */
export async function runFollow(term: Terminal, disk: string, glob: string | undefined, o: FollowCliOptions): Promise<ExitCode> {
  const starts = [o.fromStart ? '--from-start' : '', o.fromSeq !== undefined ? '--from-seq' : '', o.since !== undefined ? '--since' : ''].filter((f) => f !== '');
  if (starts.length > 1) throw new UserError(`${starts.join(' and ')} exclude each other: give one of them (or none, for new events only)`);
  let from: WatchFrom = { at: 'now' };
  if (o.fromStart) from = { at: 'first' };
  if (o.fromSeq !== undefined) {
    const n = /^\d{1,15}$/.test(o.fromSeq) ? Number(o.fromSeq) : NaN;
    if (!(n >= 1)) throw new UserError(`--from-seq must be a stream sequence (1, 2, ...), got ${JSON.stringify(o.fromSeq)}`);
    from = { at: 'seq', seq: n };
  }
  if (o.since !== undefined) {
    const time = parseSince(o.since);
    if (time === undefined) throw new UserError(`--since must be an ISO 8601 time such as 2026-11-28T05:30:00Z, or a duration ago such as 10m (s, m, h, d), got ${JSON.stringify(o.since)}`);
    from = { at: 'time', time };
  }
  const kinds = o.kinds === undefined ? [] : o.kinds.split(',').map((k) => k.trim()).filter((k) => k !== '');
  if (o.kinds !== undefined && kinds.length === 0) throw new UserError('--kinds needs at least one kind, e.g. --kinds create,delete,rename');
  const nats = o.nats ?? process.env['GAMMARAY_NATS'] ?? 'nats://127.0.0.1:4222';
  const natsProblem = natsUrlProblem(nats);
  if (natsProblem !== undefined) throw new UserError(`--nats (GAMMARAY_NATS) must be a NATS URL such as nats://127.0.0.1:4222 (${natsProblem}), got ${JSON.stringify(nats)}`);

  // Loaded on demand: the offline commands never pay for NATS.
  const view = await import('@gammaray/service-view');
  let follow;
  try {
    const natsAuth = view.readNatsAuth(o, process.env, (m) => new UserError(m));
    follow = await view.openFollow({
      nats,
      natsAuth,
      disk,
      glob,
      kinds,
      from,
      onUndecodable: (seq, subject, err) => term.warn(`${subject} #${seq}`, `not an event, skipped: ${(err as Error).message}`),
      onStall: (st) => term.note(`no events arrived for ${Math.round(st.silentMs / 1000)} s while newer ones waited (a NATS node lost?); reading on with a new consumer, none skipped`),
      onConnection: (state) =>
        term.note(state === 'lost' ? `lost the connection to NATS at ${nats}; retrying (events resume where they stopped; Ctrl-C to give up)` : `connected to NATS at ${nats} again; events resume`),
    });
  } catch (err) {
    if (err instanceof view.ReplicaError) {
      if (err.code === view.ReplicaErrorCode.InvalidArgument || err.code === view.ReplicaErrorCode.NotFound) throw new UserError(err.message);
      throw new RuntimeFailure(err.message, { cause: err });
    }
    if (err instanceof view.NatsUnreachableError) throw new RuntimeFailure(err.message, { cause: err });
    throw err;
  }
  const onSignal = (): void => void follow.close();
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  // Said once Ctrl-C is handled: a Ctrl-C that answered the note killed follow by the signal (no clean exit 0).
  if (from.at === 'seq' && from.seq > follow.watch.lastSeqAtOpen + 1) {
    term.note(`--from-seq ${from.seq} is past the last event stored (sequence ${follow.watch.lastSeqAtOpen} of ${STREAM_EVENTS}): waiting for events from there on (Ctrl-C to stop)`);
  }
  // A time to come shows nothing until then (events stored before it are skipped): said, or it looks hung.
  const now = Date.now();
  if (from.at === 'time' && from.time.getTime() > now) {
    term.note(`--since ${from.time.toISOString()} is in the future (it is ${new Date(now).toISOString()} now): waiting for events stored from then on (Ctrl-C to stop)`);
  }
  // Always escaped, not only on a terminal: one line per event even in `follow > log`, where a guest's name with
  // a newline would otherwise write lines that look like events of its choosing (--json is exact either way).
  const show = escapeControls;
  try {
    for await (const w of follow.watch) {
      const line = o.json ? JSON.stringify(eventJson(w)) : textLine(w, show);
      void term.out.text(`${line}\n`);
      await term.out.flush();
    }
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await follow.close();
  }
  await term.out.flush();
  return ExitCode.ok;
}

/** One JSON object per event: the event's fields, `streamSeq` (its GAMMARAY_EVENTS sequence), `ts` as ISO 8601, bytes as base64. */
export function eventJson(w: WatchedEvent): Record<string, unknown> {
  const e = w.event;
  const out: Record<string, unknown> = { streamSeq: w.seq, ...e, ts: e.ts.toISOString() };
  if (e.data) out['data'] = Buffer.from(e.data.buffer, e.data.byteOffset, e.data.length).toString('base64');
  return out;
}

/** `SEQ TS KIND PATH DETAILS`: e.g. `42 2024-05-01T12:00:00.000Z rename /a -> /b`. */
export function textLine(w: WatchedEvent, show: (s: string) => string): string {
  const e = w.event;
  const head = `${w.seq} ${e.ts.toISOString()} ${e.kind}`;
  const path = show(e.path);
  const details = detailsOf(e, show);
  return [head, path, details].filter((s) => s !== '').join(' ');
}

function detailsOf(e: Event, show: (s: string) => string): string {
  switch (e.kind) {
    case 'create':
      if (e.type === 'symlink' && e.target !== undefined) return `${e.type} -> ${show(e.target)}`;
      // `chr 1,1`: the device number tells a /dev/null-like node from a /dev/mem-like one.
      return e.rdev !== undefined ? `${e.type} ${e.rdev.major},${e.rdev.minor}` : e.type;
    case 'delete':
    case 'unlink':
    case 'link':
      return e.type;
    case 'rename':
      return `${e.exchange ? '<->' : '<-'} ${show(e.from ?? '')}`;
    case 'write':
      return `${e.offset ?? 0}+${e.length ?? 0}${e.dataOmitted ? ' (data omitted)' : ''}`;
    case 'truncate':
      return `${e.oldSize ?? 0} -> ${e.size ?? 0}`;
    case 'attr':
      return Object.keys(e.changes ?? {}).join(',');
    case 'snapshot':
      return `files=${e.files ?? 0} dirs=${e.dirs ?? 0}`;
    case 'corrupt':
      return `${e.corruptKind ?? ''}${e.block !== undefined ? ` block ${e.block}` : ''}: ${show(e.message ?? '')}`;
    case 'resync':
      return show(e.reason ?? '');
    default:
      return '';
  }
}
