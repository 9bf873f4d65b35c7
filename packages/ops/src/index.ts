export { OpsServer } from './ops-server.js';
export type { Readiness } from './ops-server.js';
export { readNatsAuth, natsConnectOptions } from './nats-auth.js';
export type { NatsAuth, NatsAuthFlags } from './nats-auth.js';
export { runUntilSignal } from './run.js';
export type { Runnable } from './run.js';
export { ensureStream, isStreamNotFound } from './streams.js';
export type { WantedStream } from './streams.js';
