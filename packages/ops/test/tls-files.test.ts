import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { isLoopback, readServerTls, type TlsSetting } from '../src/index.js';

const work = mkdtempSync(join(tmpdir(), 'gammaray-tls-files-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const PEM = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';
const fail = (m: string): Error => new Error(m);
const set = (flag: string, value?: string): TlsSetting => ({ flag: `--${flag}`, env: `X_${flag.toUpperCase().replaceAll('-', '_')}`, value });

describe('readServerTls', () => {
  const cert = join(work, 'c.pem');
  const key = join(work, 'k.pem');
  const ca = join(work, 'ca.pem');
  const junk = join(work, 'junk.pem');
  writeFileSync(cert, PEM);
  writeFileSync(key, PEM.replaceAll('CERTIFICATE', 'PRIVATE KEY'));
  writeFileSync(ca, PEM);
  writeFileSync(junk, 'not a pem file');

  it('reads the three files, or nothing for plaintext', () => {
    const t = readServerTls(set('cert', cert), set('key', key), set('ca', ca), fail)!;
    expect(t.cert.toString()).toBe(PEM);
    expect(t.clientCa?.toString()).toBe(PEM);
    expect(readServerTls(set('cert', cert), set('key', key), set('ca'), fail)?.clientCa).toBeUndefined();
    expect(readServerTls(set('cert'), set('key'), set('ca'), fail)).toBeUndefined();
  });

  it.each([
    [set('cert', cert), set('key'), set('ca'), '--cert (X_CERT) and --key (X_KEY) go together: give both PEM files, or neither for plaintext'],
    [set('cert'), set('key', key), set('ca'), '--cert (X_CERT) and --key (X_KEY) go together'],
    [set('cert'), set('key'), set('ca', ca), '--ca (X_CA) needs --cert and --key: client certificates are checked only over TLS'],
    [set('cert', junk), set('key', key), set('ca'), `--cert (X_CERT) must name a readable PEM file, ${JSON.stringify(junk)} is not: no PEM block in it`],
    [set('cert', cert), set('key', join(work, 'missing.pem')), set('ca'), 'must name a readable PEM file'],
  ])('refuses %#, naming the setting', (c, k, a, message) => {
    expect(() => readServerTls(c, k, a, fail)).toThrow(message);
  });
});

describe('isLoopback', () => {
  it.each([
    ['127.0.0.1', true],
    ['127.1.2.3', true],
    ['localhost', true],
    ['::1', true],
    ['0.0.0.0', false],
    ['10.0.0.1', false],
    ['::', false],
  ])('%s: %s', (host, want) => expect(isLoopback(host)).toBe(want));
});
