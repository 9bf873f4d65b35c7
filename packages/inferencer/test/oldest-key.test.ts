import { describe, expect, it } from 'vitest';
import { OldestKey } from '../src/oldest-key.js';

describe('OldestKey', () => {
  it('hands out the oldest live key while keys are added, deleted and re-added, as a fresh iterator would', () => {
    const map = new Map<number, string>();
    const oldest = new OldestKey(map);
    expect(oldest.next()).toBeUndefined();
    let seed = 3;
    const rand = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) % 1000;
    for (let step = 0; step < 20_000; step++) {
      const k = rand();
      const op = rand() % 4;
      if (op === 0) map.delete(k);
      else if (op === 1) {
        map.delete(k);
        map.set(k, 'x');
      } else if (op === 2 && map.size > 0) {
        const want = map.keys().next().value;
        const got = oldest.next();
        expect(got).toBe(want);
        map.delete(got!); // ok: the map is not empty
      } else if (op === 3 && k % 50 === 0) oldest.release();
      else map.set(k, 'y');
    }
  });
});
