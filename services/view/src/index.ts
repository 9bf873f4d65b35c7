import { runUntilSignal } from '@gammaray/ops';
import { pino } from 'pino';
import { readConfig, type ViewFlags } from './config.js';
import { create } from './service.js';

export { ConfigError, readConfig, parseHostPort, isLoopback, DEFAULT_NATS, DEFAULT_GRPC, MIN_TOKEN_CHARS } from './config.js';
export type { ViewConfig, ViewFlags, ListenAddress, TlsConfig } from './config.js';
export { create } from './service.js';
export type { ViewService } from './service.js';
export { createViewHandlers, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, DEFAULT_CHUNK_SIZE, MIN_CHUNK_SIZE, MAX_CHUNK_SIZE } from './api.js';
export type { ViewApiOptions, ViewHandlers } from './api.js';
export { startGrpcServer } from './server.js';
export type { GrpcServer, GrpcServerOptions } from './server.js';
export { ViewMetrics } from './metrics.js';
export type { ViewMetricsSource } from './metrics.js';
export { ViewClient } from './client.js';
export type { ViewClientOptions } from './client.js';
export { openFollow, NatsUnreachableError, checkNats, NatsProblemError, NatsProblemKind } from './follow.js';
export type { Follow, FollowOptions } from './follow.js';
export { ApiError, ApiReason, ERROR_REASON_KEY, toServiceError } from './status.js';
export type { ServiceError } from './status.js';
export { entryMessage, eventMessage, treeEntryOfMessage, fileTypeName, fileTypeOf, baseName } from './convert.js';
export { PROTO_ROOT, VIEW_PROTO_FILE, VIEW_SERVICE_NAME, LOADER_OPTIONS, loadViewPackage } from './proto.js';
export type {
  FileTypeName,
  EntryMessage,
  DiskMessage,
  ListDisksResponse,
  PathRequest,
  StatResponse,
  ListDirRequest,
  ListDirResponse,
  ReadLinkResponse,
  ReadFileRequest,
  ReadFileResponse,
  GetTreeRequest,
  GetTreeResponse,
  WatchRequest,
  WatchResponse,
  EventMessage,
  EventStatMessage,
  DeviceNumberMessage,
} from './proto.js';
export { ReplicaError, ReplicaErrorCode, compileGlob } from '@gammaray/replica';
export type { WatchFrom, WatchedEvent } from '@gammaray/replica';

/**
 * `gammaray view`: readConfig -> create -> start; SIGTERM/SIGINT -> stop. Resolves with the exit status once the
 * service has stopped.
 */
export async function runView(flags: ViewFlags): Promise<number> {
  const cfg = readConfig(flags);
  const log = pino({ name: 'gammaray-view' });
  return runUntilSignal(create(cfg, log), log);
}
export { readNatsAuth } from '@gammaray/ops';
export type { NatsAuth, NatsAuthFlags } from '@gammaray/ops';
