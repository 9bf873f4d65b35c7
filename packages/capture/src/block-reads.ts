import type { Msg, NatsConnection, Subscription } from '@nats-io/nats-core';
import {
  BLOCKS_QUEUE,
  BlockReadErrorCode,
  CorruptError,
  blocksSubject,
  decodeBlockReadRequest,
  encodeBlockReadReply,
  type BlockReadReply,
} from '@gammaray/wire';
import { pino, type Logger } from 'pino';
import type { CaptureDisk } from './capture-disk.js';
import { OutOfRangeError } from './errors.js';

/** A running block-read responder. */
export interface BlockReadServer {
  /** Stops answering (drains the subscription). */
  stop(): Promise<void>;
}

/**
 * Answers block reads for one disk on `gammaray.<disk>.blocks` (queue group `gammaray-blocks`): BSON request
 * `{offset, length}` -> BSON reply `{data, seq}` or `{error: {code, message}}`. `seq` comes from
 * {@link CaptureDisk.readConsistent}: the bytes are exactly the disk after this disk's records up to `seq`.
 * A plain subscription rather than the services API: one subject, one handler, and no extra dependency.
 */
export function serveBlockReads(nc: NatsConnection, disk: CaptureDisk, opts: { log?: Logger } = {}): BlockReadServer {
  const log = (opts.log ?? pino({ level: 'silent' })).child({ component: 'block-reads', disk: disk.name });
  const reply = (msg: Msg, r: BlockReadReply): void => {
    try {
      msg.respond(encodeBlockReadReply(r));
    } catch (err) {
      log.warn({ err }, 'could not send block-read reply');
    }
  };
  const handle = async (msg: Msg): Promise<void> => {
    if (!msg.reply) return;
    let req;
    try {
      req = decodeBlockReadRequest(msg.data);
    } catch (err) {
      const message = err instanceof CorruptError ? err.message : 'malformed request';
      reply(msg, { error: { code: BlockReadErrorCode.BadRequest, message } });
      return;
    }
    if (req.offset + req.length > disk.size) {
      reply(msg, { error: { code: BlockReadErrorCode.OutOfRange, message: `range ${req.offset}+${req.length} is outside the disk (${disk.size} bytes)` } });
      return;
    }
    try {
      const { data, seq } = await disk.readConsistent(req.offset, req.length);
      reply(msg, { data, seq });
    } catch (err) {
      const code = err instanceof OutOfRangeError ? BlockReadErrorCode.OutOfRange : BlockReadErrorCode.Unavailable;
      log.warn({ err }, 'block read failed');
      reply(msg, { error: { code, message: err instanceof Error ? err.message : 'read failed' } });
    }
  };
  const sub: Subscription = nc.subscribe(blocksSubject(disk.name), {
    queue: BLOCKS_QUEUE,
    callback: (err, msg) => {
      if (err) {
        log.warn({ err }, 'block-read subscription error');
        return;
      }
      void handle(msg);
    },
  });
  return {
    stop: async () => {
      if (!sub.isClosed()) await sub.drain();
    },
  };
}
