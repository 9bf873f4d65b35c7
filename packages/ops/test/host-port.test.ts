import { describe, expect, it } from 'vitest';
import { hostPortMessage, splitHostPort } from '../src/host-port.js';

describe('splitHostPort', () => {
  it('takes a host or an IPv6 literal in brackets and a port 0 to 65535', () => {
    expect(splitHostPort('127.0.0.1:10809')).toEqual({ host: '127.0.0.1', port: 10809 });
    expect(splitHostPort(' localhost:0 ')).toEqual({ host: 'localhost', port: 0 });
    expect(splitHostPort('[::1]:65535')).toEqual({ host: '::1', port: 65535 });
    expect(splitHostPort('0.0.0.0:9100')).toEqual({ host: '0.0.0.0', port: 9100 });
  });

  it('refuses what is not HOST:PORT', () => {
    for (const bad of ['', '10809', ':10809', 'host:', 'host:65536', 'host:123456', '::1:10809', 'host:80x', 'a:b:1', '[::1]10809', 'host: 80']) {
      expect(splitHostPort(bad), bad).toBeUndefined();
    }
  });

  it('says which setting, what it must be, an example and what was given', () => {
    expect(hostPortMessage('--grpc (GAMMARAY_GRPC)', 'x', 50051)).toBe('--grpc (GAMMARAY_GRPC) must be HOST:PORT, the port 0 to 65535 (e.g. 127.0.0.1:50051), got "x"');
  });
});
