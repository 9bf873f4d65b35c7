/**
 * Checking a `--nats` value before connecting: nats.js takes a bad one apart only when it connects, with an
 * "Invalid URL" that does not say which setting or what is wrong with it.
 */

const SCHEMES = ['nats', 'tls', 'ws', 'wss'] as const;

/**
 * Why `servers` (a NATS URL, or several separated by commas: seed servers of one cluster) cannot be connected
 * to, in a few words, or undefined when each is `nats|tls|ws|wss://HOST[:PORT]` (credentials allowed) or a bare
 * `HOST:PORT`, the port 1 to 65535 (empty list items are ignored, as natsConnectOptions does).
 */
export function natsUrlProblem(servers: string): string | undefined {
  const list = servers.split(',').map((s) => s.trim()).filter((s) => s !== '');
  if (list.length === 0) return 'no server given';
  for (const u of list) {
    const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(u)?.[1]?.toLowerCase();
    if (scheme === undefined && !/^(?:\[[^\]]+\]|[^:/@\s]+):[^:/]*$/.test(u)) return `${u} is neither a nats:// URL nor HOST:PORT`;
    if (scheme !== undefined && !(SCHEMES as readonly string[]).includes(scheme)) return `${scheme}:// is not a NATS scheme (nats, tls, ws, wss)`;
    const url = scheme === undefined ? `nats://${u}` : u;
    const port = /^[^:]+:\/\/(?:[^@/?#]*@)?(?:\[[^\]]*\]|[^:/?#]*)(?::([^/?#]*))?/.exec(url)?.[1];
    if (port !== undefined && port !== '' && !(/^\d{1,5}$/.test(port) && Number(port) >= 1 && Number(port) <= 65535)) return `the port of ${u} is not 1 to 65535`;
    if (scheme === undefined && (port === undefined || port === '')) return `${u} is neither a nats:// URL nor HOST:PORT`;
    try {
      new URL(url);
    } catch {
      return `${u} is not a valid URL`;
    }
  }
  return undefined;
}
