import type { NatsConnection } from '@nats-io/nats-core';

/**
 * A function that says whether `nc` is connected to a server at this moment, for readiness probes. The services'
 * connections reconnect for good (`maxReconnectAttempts: -1`), so `isClosed()` stays false for as long as NATS
 * is unreachable, and a probe built on it said ready throughout; this follows the connection's status events.
 */
export function watchNatsLink(nc: NatsConnection): () => boolean {
  let up = true;
  void (async () => {
    for await (const s of nc.status()) {
      if (s.type === 'disconnect') up = false;
      else if (s.type === 'reconnect') up = true;
    }
  })().catch(() => undefined);
  return () => up && !nc.isClosed();
}
