/**
 * `HOST:PORT` listen addresses (`--listen`, `--metrics`, `--grpc`), parsed one way for every service.
 */

/** A listen address. */
export interface HostPort {
  readonly host: string;
  readonly port: number;
}

const HOST_PORT = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/;

/**
 * Parses `HOST:PORT` (IPv6 as `[::1]:PORT`, surrounding spaces ignored), the port 0 to 65535 (0: any free
 * one). Undefined when `value` is not one; the caller says which setting it was and gives an example.
 */
export function splitHostPort(value: string): HostPort | undefined {
  const m = HOST_PORT.exec(value.trim());
  if (!m) return undefined;
  const port = Number(m[3]);
  if (!(port >= 0 && port <= 65535)) return undefined;
  return { host: (m[1] ?? m[2])!, port }; // ok: one of the two alternatives matched
}

/** The message for a `what` that is not `HOST:PORT`, with an example on `examplePort`. */
export function hostPortMessage(what: string, value: string, examplePort: number): string {
  return `${what} must be HOST:PORT, the port 0 to 65535 (e.g. 127.0.0.1:${examplePort}), got ${JSON.stringify(value)}`;
}
