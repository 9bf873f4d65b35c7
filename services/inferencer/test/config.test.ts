import { describe, expect, it } from 'vitest';
import { ConfigError, readConfig } from '../src/config.js';

describe('inferencer config', () => {
  it('fills defaults from CLI.md', () => {
    expect(readConfig({}, {})).toEqual({ nats: 'nats://127.0.0.1:4222', natsAuth: expect.objectContaining({ method: 'none', tls: undefined }), replicas: 1, metrics: undefined, inlineLimit: 65536, checkpointIntervalMs: 2000, disks: undefined, leaseTtlMs: 5000, heartbeatMs: 1000 });
  });

  it('reads GAMMARAY_* environment variables when flags are absent, flags winning', () => {
    const env = {
      GAMMARAY_NATS: 'nats://n:4222',
      GAMMARAY_REPLICAS: '3',
      GAMMARAY_METRICS: '[::1]:9100',
      GAMMARAY_INLINE_LIMIT: '0',
      GAMMARAY_CHECKPOINT_INTERVAL: '0.5',
      GAMMARAY_DISK: 'a,b,a',
      GAMMARAY_LEASE_TTL: '3',
      GAMMARAY_HEARTBEAT: '0.5',
      GAMMARAY_NATS_USER: 'inferencer',
      GAMMARAY_NATS_PASSWORD: 'pw',
    };
    expect(readConfig({}, env)).toEqual({ nats: 'nats://n:4222', natsAuth: expect.objectContaining({ method: 'user', user: 'inferencer', password: 'pw' }), replicas: 3, metrics: { host: '::1', port: 9100 }, inlineLimit: 0, checkpointIntervalMs: 500, disks: ['a', 'b'], leaseTtlMs: 3000, heartbeatMs: 500 });
    expect(readConfig({ leaseTtl: '9', heartbeat: '2' }, env)).toMatchObject({ leaseTtlMs: 9000, heartbeatMs: 2000 });
    const c = readConfig({ nats: 'nats://flag:1', disk: ['c'], inlineLimit: '4096', checkpointInterval: '2' }, env);
    expect(c).toMatchObject({ nats: 'nats://flag:1', disks: ['c'], inlineLimit: 4096, checkpointIntervalMs: 2000 });
  });

  it.each([
    [{ replicas: '0' }, /--replicas/],
    [{ nats: 'http://x' }, /--nats/],
    [{ metrics: 'localhost' }, /--metrics \(GAMMARAY_METRICS\) must be HOST:PORT/],
    [{ inlineLimit: '-1' }, /--inline-limit \(GAMMARAY_INLINE_LIMIT\)/],
    [{ inlineLimit: '2000000' }, /--inline-limit/],
    [{ checkpointInterval: '0' }, /--checkpoint-interval \(GAMMARAY_CHECKPOINT_INTERVAL\)/],
    [{ checkpointInterval: 'soon' }, /--checkpoint-interval/],
    [{ disk: ['vm1=/x.img'] }, /--disk \(GAMMARAY_DISK\) must be a disk id/],
    [{ leaseTtl: '0' }, /--lease-ttl \(GAMMARAY_LEASE_TTL\) must be seconds/],
    [{ heartbeat: 'often' }, /--heartbeat \(GAMMARAY_HEARTBEAT\) must be seconds/],
    [{ natsUser: 'x' }, /--nats-user \(GAMMARAY_NATS_USER\) needs its password in GAMMARAY_NATS_PASSWORD/],
    [{ natsCreds: '/nonexistent.creds' }, /--nats-creds \(GAMMARAY_NATS_CREDS\): cannot read/],
    [{ natsTlsCert: '/etc/hostname' }, /--nats-tls-cert and --nats-tls-key go together/],
    [{ leaseTtl: '2', heartbeat: '1' }, /--heartbeat \(GAMMARAY_HEARTBEAT\) must be at most a third of --lease-ttl/],
  ])('rejects %j naming the setting', (flags, msg) => {
    expect(() => readConfig(flags, {})).toThrow(ConfigError);
    expect(() => readConfig(flags, {})).toThrow(msg);
  });
});
