import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, DEFAULT_GRPC, readConfig } from '../src/config.js';

const PEM = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';
const dir = mkdtempSync(join(tmpdir(), 'gammaray-view-config-'));
const pem = (name: string): string => {
  const p = join(dir, name);
  writeFileSync(p, PEM);
  return p;
};
const fails = (f: () => unknown, setting: RegExp): void => {
  expect(f).toThrow(ConfigError);
  expect(f).toThrow(setting);
};

describe('readConfig', () => {
  it('defaults to loopback gRPC, no mount, no TLS, no token', () => {
    const cfg = readConfig({}, {});
    expect(cfg).toMatchObject({ nats: 'nats://127.0.0.1:4222', grpc: { host: '127.0.0.1', port: 50051 }, mount: undefined, allowOther: false, tls: undefined, token: undefined, replicas: 1, disks: undefined, metrics: undefined });
    expect(DEFAULT_GRPC).toBe('127.0.0.1:50051');
  });
  it('reads GAMMARAY_* variables, and flags win over them', () => {
    const env = { GAMMARAY_NATS: 'nats://a:1', GAMMARAY_GRPC: '[::1]:9000', GAMMARAY_MOUNT: '/mnt/g', GAMMARAY_ALLOW_OTHER: '1', GAMMARAY_TOKEN: 't'.repeat(20), GAMMARAY_DISK: 'a,b,a', GAMMARAY_METRICS: '0.0.0.0:9100' };
    expect(readConfig({}, env)).toMatchObject({ nats: 'nats://a:1', grpc: { host: '::1', port: 9000 }, mount: '/mnt/g', allowOther: true, token: 't'.repeat(20), disks: ['a', 'b'], metrics: { host: '0.0.0.0', port: 9100 } });
    expect(readConfig({ grpc: '127.0.0.1:0', token: 'u'.repeat(16) }, env)).toMatchObject({ grpc: { port: 0 }, token: 'u'.repeat(16) });
  });
  it('names the setting that is wrong', () => {
    fails(() => readConfig({ grpc: 'localhost' }, {}), /--grpc \(GAMMARAY_GRPC\)/);
    fails(() => readConfig({ nats: 'http://x' }, {}), /--nats/);
    fails(() => readConfig({ token: 'short' }, {}), /--token \(GAMMARAY_TOKEN\).*16/);
    fails(() => readConfig({ token: 'has a space in it....' }, {}), /--token/);
    fails(() => readConfig({ allowOther: true }, {}), /--allow-other.*--mount/);
    fails(() => readConfig({ tlsCert: pem('c.pem') }, {}), /--tls-key/);
    fails(() => readConfig({ tlsClientCa: pem('ca.pem') }, {}), /--tls-client-ca.*--tls-cert/);
    fails(() => readConfig({ tlsCert: join(dir, 'missing.pem'), tlsKey: pem('k.pem') }, {}), /--tls-cert.*missing\.pem/);
    fails(() => readConfig({ replicas: '7' }, {}), /--replicas/);
    fails(() => readConfig({ disk: ['Bad!'] }, {}), /--disk/);
    // A yes/no variable that is neither (it was read as no: the mount served to this user only, silently).
    fails(() => readConfig({}, { GAMMARAY_MOUNT: '/mnt/g', GAMMARAY_ALLOW_OTHER: 'y' }), /GAMMARAY_ALLOW_OTHER must be 1, true, yes or on.*"y"/);
    expect(readConfig({}, { GAMMARAY_MOUNT: '/mnt/g', GAMMARAY_ALLOW_OTHER: 'off' }).allowOther).toBe(false);
    expect(readConfig({}, { GAMMARAY_ALLOW_OTHER: '' }).allowOther).toBe(false);
  });
  it('reads the TLS files at start-up', () => {
    const cfg = readConfig({ tlsCert: pem('c.pem'), tlsKey: pem('k.pem'), tlsClientCa: pem('ca.pem') }, {});
    expect(cfg.tls?.cert.toString()).toBe(PEM);
    expect(cfg.tls?.clientCa?.toString()).toBe(PEM);
  });
});
