import type { NatsConnection } from '@nats-io/nats-core';
import { AckPublisher, type AckPublishOptions, type PublishAck } from '@gammaray/ops';

export { PUBLISH_HEADROOM } from '@gammaray/ops';
export type { PublishAck } from '@gammaray/ops';

/** Options of one {@link RecordPublisher.publish} call: the msg id, the ack timeout and the headroom loan. */
export type RecordPublishOptions = Pick<AckPublishOptions, 'msgID' | 'timeout' | 'headroom'>;

/** Publishes one record and resolves with JetStream's ack (a JetStreamClient fits this shape). */
export interface RecordPublisher {
  publish(subject: string, data: Uint8Array, opts: RecordPublishOptions): Promise<PublishAck>;
  /**
   * Publishes the concatenation of `parts` as one message, each part written to the socket as it is (optional:
   * without it, records are written whole). Every part stays unchanged until the promise settles.
   */
  publishParts?(subject: string, parts: readonly Uint8Array[], opts: RecordPublishOptions): Promise<PublishAck>;
}

/**
 * The capture's record publisher: {@link AckPublisher} (acks on one inbox subscription, each message framed by
 * hand, the record framed in place in its headroom) with every record sent to the socket at once and on its own.
 * Left for the end of the turn, two records queued together (a 1 MiB write makes two) would be packed by nats.js
 * into a new zero-filled buffer, megabytes copied and left to the collector; and a record's NBD replies wait for
 * its ack, so it should not wait for anything else.
 */
export class AsyncAckPublisher extends AckPublisher implements RecordPublisher {
  constructor(nc: NatsConnection) {
    super(nc, { sendAloneBytes: 0 });
  }
}
