/**
 * The TLS settings a server takes from its flags (a certificate, its key, and optionally a CA for client
 * certificates), read and checked at start-up with messages that name the setting; shared by the view (gRPC)
 * and the capture (NBD).
 */
import { readFileSync } from 'node:fs';

/** A server's PEM files, read. */
export interface ServerTlsFiles {
  readonly cert: Buffer;
  readonly key: Buffer;
  /** Client certificates must be signed by this CA (PEM); none asked for when undefined. */
  readonly clientCa: Buffer | undefined;
}

/** One setting: its flag and its environment variable. */
export interface TlsSetting {
  readonly flag: string;
  readonly env: string;
  readonly value: string | undefined;
}

const named = (s: TlsSetting): string => `${s.flag} (${s.env})`;

/** Whether `host` is a loopback address (where plaintext is acceptable). */
export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

/** Reads a PEM file, or throws what `fail` makes of the problem. */
export function readPem(path: string, what: string, fail: (message: string) => Error): Buffer {
  try {
    const b = readFileSync(path);
    if (!/-----BEGIN [A-Z0-9 ]+-----/.test(b.toString('latin1'))) throw new Error('no PEM block in it');
    return b;
  } catch (err) {
    throw fail(`${what} must name a readable PEM file, ${JSON.stringify(path)} is not: ${(err as Error).message}`);
  }
}

/**
 * The server's TLS files from its certificate, key and client-CA settings: undefined for plaintext (none given);
 * a certificate without its key (or the reverse), or a client CA without both, is refused through `fail`.
 */
export function readServerTls(cert: TlsSetting, key: TlsSetting, clientCa: TlsSetting, fail: (message: string) => Error): ServerTlsFiles | undefined {
  if (cert.value || key.value) {
    if (!cert.value || !key.value) throw fail(`${named(cert)} and ${named(key)} go together: give both PEM files, or neither for plaintext`);
    return {
      cert: readPem(cert.value, named(cert), fail),
      key: readPem(key.value, named(key), fail),
      clientCa: clientCa.value ? readPem(clientCa.value, named(clientCa), fail) : undefined,
    };
  }
  if (clientCa.value) throw fail(`${named(clientCa)} needs ${cert.flag} and ${key.flag}: client certificates are checked only over TLS`);
  return undefined;
}
