import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, readConfig } from '../src/config.js';

describe('capture config', () => {
  it('takes flags, fills defaults from CLI.md', () => {
    const c = readConfig({ disk: ['vm1=/tmp/vm1.img', 'vm-2=/tmp/b.img'] }, {});
    expect(c).toMatchObject({ nats: 'nats://127.0.0.1:4222', listen: { host: '127.0.0.1', port: 10809 }, replicas: 1, metrics: undefined, trace: undefined });
    expect(c.disks).toEqual([{ id: 'vm1', image: '/tmp/vm1.img' }, { id: 'vm-2', image: '/tmp/b.img' }]);
  });

  it('reads GAMMARAY_* environment variables when flags are absent, flags winning', () => {
    const env = { GAMMARAY_NATS: 'nats://n:4222', GAMMARAY_LISTEN: '0.0.0.0:1', GAMMARAY_DISK: 'a=/a,b=/b', GAMMARAY_REPLICAS: '3', GAMMARAY_METRICS: '[::1]:9100' };
    const c = readConfig({}, env);
    expect(c).toMatchObject({ nats: 'nats://n:4222', listen: { host: '0.0.0.0', port: 1 }, replicas: 3, metrics: { host: '::1', port: 9100 } });
    expect(c.disks.map((d) => d.id)).toEqual(['a', 'b']);
    expect(readConfig({ nats: 'nats://flag:1', disk: ['c=/c'] }, env).nats).toBe('nats://flag:1');
  });

  it('takes --partition ID=N for served disks (GAMMARAY_PARTITION too)', () => {
    const c = readConfig({ disk: ['a=/a', 'b=/b'], partition: ['b=2'] }, {});
    expect(c.disks).toEqual([{ id: 'a', image: '/a' }, { id: 'b', image: '/b', partition: 2 }]);
    expect(readConfig({}, { GAMMARAY_DISK: 'a=/a,b=/b', GAMMARAY_PARTITION: 'a=0,b=15' }).disks.map((d) => d.partition)).toEqual([0, 15]);
  });

  it('takes --volume VOL=ID:N for partitions of served disks (GAMMARAY_VOLUME too)', () => {
    const c = readConfig({ disk: ['vm1=/a', 'vm2=/b'], volume: ['vm1-boot=vm1:2', 'vm1-home=vm1:5'] }, {});
    expect(c.disks[0]).toEqual({ id: 'vm1', image: '/a', volumes: [{ id: 'vm1-boot', partition: 2 }, { id: 'vm1-home', partition: 5 }] });
    expect(c.disks[1]).toEqual({ id: 'vm2', image: '/b' });
    expect(readConfig({}, { GAMMARAY_DISK: 'a=/a', GAMMARAY_VOLUME: 'a-p1=a:1' }).disks[0]?.volumes).toEqual([{ id: 'a-p1', partition: 1 }]);
  });

  it('takes --assume-raw ID for served disks (GAMMARAY_ASSUME_RAW too)', () => {
    expect(readConfig({ disk: ['a=/a', 'b=/b'], assumeRaw: ['b'] }, {}).disks).toEqual([{ id: 'a', image: '/a' }, { id: 'b', image: '/b', assumeRaw: true }]);
    expect(readConfig({}, { GAMMARAY_DISK: 'a=/a,b=/b', GAMMARAY_ASSUME_RAW: 'a,b' }).disks.map((d) => d.assumeRaw)).toEqual([true, true]);
  });

  it('takes --nbd-tls-cert, --nbd-tls-key and --nbd-tls-client-ca as PEM files (GAMMARAY_NBD_TLS_* too)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'gammaray-capture-config-'));
    try {
      const pem = join(dir, 'x.pem');
      writeFileSync(pem, '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n');
      expect(readConfig({ disk: ['a=/a'] }, {}).nbdTls).toBeUndefined();
      const c = readConfig({ disk: ['a=/a'], nbdTlsCert: pem, nbdTlsKey: pem }, {});
      expect(c.nbdTls?.cert.toString()).toContain('BEGIN CERTIFICATE');
      expect(c.nbdTls?.clientCa).toBeUndefined();
      expect(readConfig({ disk: ['a=/a'] }, { GAMMARAY_NBD_TLS_CERT: pem, GAMMARAY_NBD_TLS_KEY: pem, GAMMARAY_NBD_TLS_CLIENT_CA: pem }).nbdTls?.clientCa).toBeDefined();
      expect(() => readConfig({ disk: ['a=/a'], nbdTlsCert: pem, nbdTlsKey: pem, trace: '-' }, {})).toThrow(/--nbd-tls-cert applies to NBD clients, and --trace serves none/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('takes --listen-unix PATH (GAMMARAY_LISTEN_UNIX) instead of --listen, made absolute', () => {
    expect(readConfig({ disk: ['a=/a'], listenUnix: '/run/g/nbd.sock' }, {}).listenUnix).toBe('/run/g/nbd.sock');
    expect(readConfig({ disk: ['a=/a'] }, { GAMMARAY_LISTEN_UNIX: 'rel.sock' }).listenUnix).toBe(join(process.cwd(), 'rel.sock'));
    expect(readConfig({ disk: ['a=/a'] }, {}).listenUnix).toBeUndefined();
  });

  it.each([
    [{ disk: ['a=/x'], listenUnix: '/s', listen: '127.0.0.1:1' }, /--listen \(GAMMARAY_LISTEN\) and --listen-unix \(GAMMARAY_LISTEN_UNIX\) are two places to serve NBD: give one of them/],
    [{ disk: ['a=/x'], listenUnix: '/s', trace: '-' }, /--listen-unix serves NBD clients, and --trace serves none/],
    [{ disk: ['a=/x'], nbdTlsKey: '/k' }, /--nbd-tls-cert \(GAMMARAY_NBD_TLS_CERT\) and --nbd-tls-key \(GAMMARAY_NBD_TLS_KEY\) go together/],
    [{ disk: ['a=/x'], nbdTlsClientCa: '/ca' }, /--nbd-tls-client-ca \(GAMMARAY_NBD_TLS_CLIENT_CA\) needs --nbd-tls-cert and --nbd-tls-key/],
    [{ disk: ['a=/x'], nbdTlsCert: '/nonexistent.pem', nbdTlsKey: '/k' }, /--nbd-tls-cert \(GAMMARAY_NBD_TLS_CERT\) must name a readable PEM file/],
    [{ disk: ['a=/x'], assumeRaw: ['b'] }, /--assume-raw "b" names no disk that --disk serves/],
    [{ disk: ['a=/x'], volume: ['b=a'] }, /--volume must be VOLUME=ID:N/],
    [{ disk: ['a=/x'], volume: ['b=a:0'] }, /--volume must be VOLUME=ID:N/],
    [{ disk: ['a=/x'], volume: ['B=a:1'] }, /--volume must be VOLUME=ID:N/],
    [{ disk: ['a=/x'], volume: ['b=c:1'] }, /names disk c, which no --disk serves/],
    [{ disk: ['a=/x'], volume: ['a=a:1'] }, /a is already a disk or volume id/],
    [{ disk: ['a=/x'], volume: ['b=a:1', 'b=a:2'] }, /b is already a disk or volume id/],
    [{ disk: ['a=/x'], partition: ['a'] }, /--partition must be ID=N/],
    [{ disk: ['a=/x'], partition: ['a=-1'] }, /--partition must be ID=N/],
    [{ disk: ['a=/x'], partition: ['a=5000'] }, /--partition must be ID=N/],
    [{ disk: ['a=/x'], partition: ['b=1'] }, /names disk b, which no --disk serves/],
    [{ disk: ['a=/x'], partition: ['a=1', 'a=2'] }, /--partition a is given twice/],
    [{}, /no disk to serve/],
    [{ disk: ['VM=/x'] }, /--disk must be ID=IMAGE/],
    [{ disk: ['vm1'] }, /--disk must be ID=IMAGE/],
    [{ disk: ['a=/x', 'a=/y'] }, /given twice/],
    [{ disk: ['a=/x'], listen: 'localhost' }, /--listen \(GAMMARAY_LISTEN\) must be HOST:PORT/],
    [{ disk: ['a=/x'], replicas: '0' }, /--replicas/],
    [{ disk: ['a=/x'], nats: 'http://x' }, /--nats/],
    [{ disk: ['a=/x', 'b=/y'], trace: '-' }, /--trace applies to exactly one/],
    // It said "/no/such/trace does not exist: give an existing raw disk image", after attaching the disk.
    [{ disk: ['a=/x'], trace: '/no/such/trace' }, /^--trace \(GAMMARAY_TRACE\): cannot read \/no\/such\/trace \(ENOENT\); give the trace file QEMU wrote, or - to read it from stdin$/],
    [{ disk: ['a=/x'], trace: '/' }, /--trace \(GAMMARAY_TRACE\): \/ is a directory/],
  ])('rejects %j naming the setting', (flags, msg) => {
    expect(() => readConfig(flags, {})).toThrow(ConfigError);
    expect(() => readConfig(flags, {})).toThrow(msg);
  });
});
