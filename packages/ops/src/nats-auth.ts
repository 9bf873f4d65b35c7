/**
 * How every gammaray process authenticates to NATS and protects the connection: one set of flags and
 * `GAMMARAY_NATS_*` variables, validated at start-up, turned into nats.js connection options.
 */
import { accessSync, constants, readFileSync } from 'node:fs';
import { credsAuthenticator, nkeyAuthenticator, type ConnectionOptions } from '@nats-io/nats-core';

/** The flags (commander's camelCase names); secrets come from the environment only. */
export interface NatsAuthFlags {
  /** `--nats-creds FILE`: a NATS credentials file (user JWT + nkey seed), as `nsc` writes them. */
  readonly natsCreds?: string;
  /** `--nats-nkey FILE`: a file holding a user nkey seed (`SU...`). */
  readonly natsNkey?: string;
  /** `--nats-user NAME`: user name; the password comes from GAMMARAY_NATS_PASSWORD. */
  readonly natsUser?: string;
  /** `--nats-tls-ca FILE`: verify the server's certificate against this CA (PEM); turns TLS on. */
  readonly natsTlsCa?: string;
  /** `--nats-tls-cert FILE` / `--nats-tls-key FILE`: a client certificate for servers that verify clients. */
  readonly natsTlsCert?: string;
  readonly natsTlsKey?: string;
}

/** Validated NATS credentials and TLS settings (file paths checked readable; no secret is logged). */
export interface NatsAuth {
  readonly method: 'none' | 'creds' | 'nkey' | 'user' | 'token';
  readonly credsFile?: string;
  readonly nkeyFile?: string;
  readonly user?: string;
  readonly password?: string;
  readonly token?: string;
  readonly tls?: { readonly caFile?: string; readonly certFile?: string; readonly keyFile?: string };
}

/** A user nkey seed. */
const USER_SEED = /^SU[A-Z2-7]{50,}$/;
/** One block of a creds file: a line of dashes, the value, a line of dashes (the framing nats.js parses). */
const CREDS_BLOCK = /-{3,}[^\n]*-{3,}\n\s*(\S+)\s*\n\s*-{3,}[^\n]*-{3,}/g;

/** Whether `text` holds what nats.js's credsAuthenticator takes: a JWT block, then a user seed block. */
function isCredsFile(text: string): boolean {
  const [jwt, seed] = [...text.matchAll(CREDS_BLOCK)].map((m) => m[1]!); // ok: group 1 always matches
  return jwt !== undefined && seed !== undefined && /^[\w-]+\.[\w-]+\.[\w-]+$/.test(jwt) && USER_SEED.test(seed);
}

/**
 * Reads the NATS auth settings from flags and env (`GAMMARAY_NATS_CREDS`, `GAMMARAY_NATS_NKEY`,
 * `GAMMARAY_NATS_USER` + `GAMMARAY_NATS_PASSWORD`, `GAMMARAY_NATS_TOKEN`, `GAMMARAY_NATS_TLS_CA`,
 * `GAMMARAY_NATS_TLS_CERT`, `GAMMARAY_NATS_TLS_KEY`). Throws what `fail` builds, with a message naming the
 * setting, when they contradict each other or a file cannot be read.
 */
export function readNatsAuth(flags: NatsAuthFlags, env: NodeJS.ProcessEnv, fail: (message: string) => Error): NatsAuth {
  const pick = (flag: string | undefined, name: string): string | undefined => {
    const v = flag ?? env[name];
    return v === undefined || v === '' ? undefined : v;
  };
  const file = (path: string | undefined, what: string): string | undefined => {
    if (path === undefined) return undefined;
    try {
      accessSync(path, constants.R_OK);
    } catch {
      throw fail(`${what}: cannot read ${path}; give a readable file`);
    }
    return path;
  };
  const credsFile = file(pick(flags.natsCreds, 'GAMMARAY_NATS_CREDS'), '--nats-creds (GAMMARAY_NATS_CREDS)');
  const nkeyFile = file(pick(flags.natsNkey, 'GAMMARAY_NATS_NKEY'), '--nats-nkey (GAMMARAY_NATS_NKEY)');
  const user = pick(flags.natsUser, 'GAMMARAY_NATS_USER');
  const password = pick(undefined, 'GAMMARAY_NATS_PASSWORD');
  const token = pick(undefined, 'GAMMARAY_NATS_TOKEN');
  const methods = [credsFile && 'creds', nkeyFile && 'nkey', (user !== undefined || password !== undefined) && 'user', token !== undefined && 'token'].filter(Boolean) as NatsAuth['method'][];
  if (methods.length > 1) throw fail(`NATS credentials given ${methods.length} ways (${methods.join(', ')}): choose one of --nats-creds, --nats-nkey, --nats-user with GAMMARAY_NATS_PASSWORD, or GAMMARAY_NATS_TOKEN`);
  if (user !== undefined && password === undefined) throw fail('--nats-user (GAMMARAY_NATS_USER) needs its password in GAMMARAY_NATS_PASSWORD (the environment keeps it out of process listings)');
  if (password !== undefined && user === undefined) throw fail('GAMMARAY_NATS_PASSWORD is set without a user: give --nats-user (GAMMARAY_NATS_USER) too');
  if (nkeyFile !== undefined && !USER_SEED.test(readFileSync(nkeyFile, 'utf8').trim())) {
    throw fail(`--nats-nkey (GAMMARAY_NATS_NKEY): ${nkeyFile} does not hold a user nkey seed (a line starting with SU)`);
  }
  // nats.js reads the file only when it connects, and says "unable to parse credentials" (exit 1, no setting named).
  if (credsFile !== undefined && !isCredsFile(readFileSync(credsFile, 'utf8'))) {
    throw fail(`--nats-creds (GAMMARAY_NATS_CREDS): ${credsFile} is not a NATS credentials file (a user JWT and its nkey seed, each between ----- lines, as nsc writes them)`);
  }
  const caFile = file(pick(flags.natsTlsCa, 'GAMMARAY_NATS_TLS_CA'), '--nats-tls-ca (GAMMARAY_NATS_TLS_CA)');
  const certFile = file(pick(flags.natsTlsCert, 'GAMMARAY_NATS_TLS_CERT'), '--nats-tls-cert (GAMMARAY_NATS_TLS_CERT)');
  const keyFile = file(pick(flags.natsTlsKey, 'GAMMARAY_NATS_TLS_KEY'), '--nats-tls-key (GAMMARAY_NATS_TLS_KEY)');
  if ((certFile === undefined) !== (keyFile === undefined)) throw fail('--nats-tls-cert and --nats-tls-key go together (GAMMARAY_NATS_TLS_CERT, GAMMARAY_NATS_TLS_KEY)');
  const tls = caFile || certFile ? { caFile, certFile, keyFile } : undefined;
  return Object.freeze({ method: methods[0] ?? 'none', credsFile, nkeyFile, user, password, token, tls });
}

/**
 * Connection options for `connect()` of @nats-io/transport-node: the servers (a comma-separated list is several
 * seed servers of one cluster), the client name, reconnecting forever, and the auth and TLS of `auth`.
 */
export function natsConnectOptions(servers: string, name: string, auth: NatsAuth | undefined): ConnectionOptions {
  const o: ConnectionOptions = {
    servers: servers.split(',').map((s) => s.trim()).filter((s) => s !== ''),
    name,
    maxReconnectAttempts: -1,
    reconnectTimeWait: 250,
    // nats.js otherwise builds two Error objects (stack captures) per publish, which cost more CPU than the
    // publish itself at thousands of records a second.
    noAsyncTraces: true,
  };
  if (!auth) return o;
  if (auth.credsFile) o.authenticator = credsAuthenticator(() => new Uint8Array(readFileSync(auth.credsFile!))); // ok: checked above
  if (auth.nkeyFile) o.authenticator = nkeyAuthenticator(() => new TextEncoder().encode(readFileSync(auth.nkeyFile!, 'utf8').trim())); // ok: checked above
  if (auth.user !== undefined) {
    o.user = auth.user;
    o.pass = auth.password;
  }
  if (auth.token !== undefined) o.token = auth.token;
  if (auth.tls) {
    o.tls = {};
    if (auth.tls.caFile) o.tls.caFile = auth.tls.caFile;
    if (auth.tls.certFile) o.tls.certFile = auth.tls.certFile;
    if (auth.tls.keyFile) o.tls.keyFile = auth.tls.keyFile;
  }
  return o;
}
