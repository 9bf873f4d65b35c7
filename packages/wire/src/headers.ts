/** Lone UTF-16 surrogates: encodeURI throws on them, so they become U+FFFD first. */
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;

/**
 * The value of header `Gammaray-Path` for a path: `encodeURI(path)`. A NATS header value must not hold CR or LF
 * and is safest in printable ASCII, while a guest's names may hold any byte but "/" and NUL. encodeURI
 * percent-encodes every control character, space, "%" and non-ASCII character (as UTF-8) and keeps "/" and the
 * other URI delimiters readable, so `/etc/motd` stays `/etc/motd` and {@link decodePathHeader} restores the path
 * exactly. The event's BSON `path` field stays the authority; the header is for filtering without decoding.
 */
export function encodePathHeader(path: string): string {
  return encodeURI(path.replace(LONE_SURROGATE, '\uFFFD'));
}

/** The path in a `Gammaray-Path` header value, or undefined when the value is not valid percent-encoding. */
export function decodePathHeader(value: string): string | undefined {
  try {
    return decodeURI(value);
  } catch {
    return undefined;
  }
}
