/** A copy of `b` in a buffer of its own (a memcpy; `Uint8Array.from` walks an iterator and is far slower). */
export function copyBytes(b: Uint8Array): Uint8Array {
  const c = new Uint8Array(b.length);
  c.set(b);
  return c;
}
