/**
 * The gRPC server: the view service, grpc.health.v1, server reflection (v1 and v1alpha, for grpcurl and buf
 * curl), optional TLS and bearer-token authentication, and per-call metrics — all in one grpc-js Server.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import type * as protoLoader from '@grpc/proto-loader';
import { ReflectionService } from '@grpc/reflection';
import { HealthImplementation } from 'grpc-health-check';
import type { Logger } from 'pino';
import type { ListenAddress, TlsConfig } from './config.js';
import { VIEW_SERVICE_NAME, loadViewPackage, viewFileDescriptors } from './proto.js';
import { ApiReason, ERROR_REASON_KEY } from './status.js';

/**
 * Services that never need the token: probes must work without secrets, and the schema reflection serves is the
 * public .proto (so `grpcurl list` / `buf curl --list-methods` work without one).
 */
const OPEN_PREFIXES = ['/grpc.health.v1.Health/', '/grpc.reflection.v1.ServerReflection/', '/grpc.reflection.v1alpha.ServerReflection/'];
const STATUS_NAMES: ReadonlyMap<number, string> = new Map(Object.entries(grpc.status).filter(([, v]) => typeof v === 'number').map(([k, v]) => [v as number, k]));

/** Options of {@link startGrpcServer}. */
export interface GrpcServerOptions {
  readonly address: ListenAddress;
  readonly implementation: grpc.UntypedServiceImplementation;
  readonly tls: TlsConfig | undefined;
  readonly token: string | undefined;
  readonly log: Logger;
  /** Called once per finished call: full method path, status code name, seconds. */
  readonly onCall?: (method: string, code: string, seconds: number) => void;
}

/** A started server. */
export interface GrpcServer {
  /** The bound port (the real one when 0 was asked for). */
  readonly port: number;
  readonly health: HealthImplementation;
  /** Stops accepting; waits up to `graceMs` for calls to finish, then cancels the rest. */
  stop(graceMs: number): Promise<void>;
}

const digest = (s: string): Buffer => createHash('sha256').update(s).digest();

/** An interceptor that refuses calls without `authorization: Bearer <token>` (health and reflection excepted). */
function authInterceptor(token: string, log: Logger): grpc.ServerInterceptor {
  const want = digest(token);
  return (method, call) =>
    new grpc.ServerInterceptingCall(call, {
      start: (next) => {
        next({
          onReceiveMetadata: (md, mdNext) => {
            if (OPEN_PREFIXES.some((p) => method.path.startsWith(p))) return mdNext(md);
            const header = md.get('authorization')[0];
            const m = typeof header === 'string' ? /^Bearer (\S+)$/i.exec(header.trim()) : null;
            // Compare digests: equal lengths for timingSafeEqual, and no early exit on the first differing byte.
            if (m && timingSafeEqual(digest(m[1]!), want)) return mdNext(md); // ok: group 1 always matches
            log.debug({ method: method.path, peer: call.getPeer(), given: !!header }, 'unauthenticated call refused');
            const trailers = new grpc.Metadata();
            trailers.set(ERROR_REASON_KEY, ApiReason.Unauthenticated);
            call.sendStatus({
              code: grpc.status.UNAUTHENTICATED,
              details: header ? 'the bearer token is not the one this view was started with' : 'this view requires a bearer token: send metadata "authorization: Bearer <token>" (gammaray tree --token, buf curl -H)',
              metadata: trailers,
            });
          },
        });
      },
    });
}

/** An interceptor that reports each call's method, status and duration once. */
function metricsInterceptor(onCall: NonNullable<GrpcServerOptions['onCall']>): grpc.ServerInterceptor {
  return (method, call) => {
    const t0 = performance.now();
    let done = false;
    const finish = (code: number): void => {
      if (done) return;
      done = true;
      onCall(method.path, STATUS_NAMES.get(code) ?? String(code), (performance.now() - t0) / 1000);
    };
    return new grpc.ServerInterceptingCall(call, {
      start: (next) => next({ onCancel: () => finish(grpc.status.CANCELLED) }),
      sendStatus: (status, next) => {
        finish(status.code);
        next(status);
      },
    });
  };
}

/** Builds the server, binds it and starts serving. */
export async function startGrpcServer(o: GrpcServerOptions): Promise<GrpcServer> {
  const interceptors: grpc.ServerInterceptor[] = [];
  // grpc-js nests them in order, the last outermost: the token check answers refusals through the metrics
  // interceptor, so refused calls are counted too.
  if (o.onCall) interceptors.push(metricsInterceptor(o.onCall));
  if (o.token) interceptors.push(authInterceptor(o.token, o.log));
  const server = new grpc.Server({
    interceptors,
    // Streams of many small messages (GetTree, Watch) are common; keep idle clients' connections reasonable.
    'grpc.keepalive_permit_without_calls': 1,
    'grpc.max_send_message_length': 16 * 1024 * 1024,
  });
  const pkg = loadViewPackage();
  const def = grpc.loadPackageDefinition(pkg) as unknown as { gammaray: { v1: { ViewService: grpc.ServiceClientConstructor } } };
  server.addService(def.gammaray.v1.ViewService.service, o.implementation);
  const health = new HealthImplementation({ '': 'NOT_SERVING', [VIEW_SERVICE_NAME]: 'NOT_SERVING' });
  health.addToServer(server);
  // Reflection reads `fileDescriptorProtos` of each definition: give it the exact compiled descriptors.
  const reflected = { [VIEW_SERVICE_NAME]: { fileDescriptorProtos: viewFileDescriptors() } } as unknown as protoLoader.PackageDefinition;
  new ReflectionService(reflected).addToServer(server);

  const creds = o.tls
    ? grpc.ServerCredentials.createSsl(o.tls.clientCa ?? null, [{ cert_chain: o.tls.cert, private_key: o.tls.key }], o.tls.clientCa !== undefined)
    : grpc.ServerCredentials.createInsecure();
  const host = o.address.host.includes(':') ? `[${o.address.host}]` : o.address.host;
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(`${host}:${o.address.port}`, creds, (err, p) => (err ? reject(err) : resolve(p)));
  });
  return {
    port,
    health,
    async stop(graceMs) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        new Promise<void>((r) => server.tryShutdown(() => r())),
        new Promise<void>((r) => {
          timer = setTimeout(() => {
            server.forceShutdown();
            r();
          }, graceMs);
        }),
      ]);
      clearTimeout(timer);
    },
  };
}
