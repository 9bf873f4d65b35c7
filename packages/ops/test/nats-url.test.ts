import { describe, expect, it } from 'vitest';
import { natsUrlProblem } from '../src/nats-url.js';

describe('natsUrlProblem', () => {
  it('accepts NATS URLs, HOST:PORT and comma lists of them', () => {
    for (const ok of ['nats://127.0.0.1:4222', 'nats://localhost', 'tls://user:pw@nats.example:4443', 'ws://[::1]:8080', '127.0.0.1:4222', 'nats://a:4222, nats://b:4222,', 'nats://127.0.0.1:65535']) {
      expect(natsUrlProblem(ok), ok).toBeUndefined();
    }
  });
  it('says the port is out of range for port 0 or above 65535', () => {
    expect(natsUrlProblem('nats://127.0.0.1:99999')).toBe('the port of nats://127.0.0.1:99999 is not 1 to 65535');
    expect(natsUrlProblem('127.0.0.1:99999')).toBe('the port of 127.0.0.1:99999 is not 1 to 65535');
    expect(natsUrlProblem('nats://a:4222,nats://b:0')).toBe('the port of nats://b:0 is not 1 to 65535');
    expect(natsUrlProblem('nats://a:x')).toBe('the port of nats://a:x is not 1 to 65535');
  });
  it('refuses other schemes, a bare host and an empty list', () => {
    expect(natsUrlProblem('http://127.0.0.1:4222')).toMatch(/http:\/\/ is not a NATS scheme/);
    expect(natsUrlProblem('localhost')).toMatch(/neither a nats:\/\/ URL nor HOST:PORT/);
    expect(natsUrlProblem(' , ')).toBe('no server given');
  });
});
