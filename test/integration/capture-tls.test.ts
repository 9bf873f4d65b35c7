/**
 * `gammaray capture` with NBD over TLS and client certificates (`--nbd-tls-cert`, `--nbd-tls-key`,
 * `--nbd-tls-client-ca`), with QEMU's own NBD client (qemu-img, qemu-io) and x509 credentials made by openssl: a
 * populated ext4 image copied over the disk through TLS is captured exactly (the stream replayed onto the
 * starting image equals the capture's image), and a client without TLS or without a certificate the CA signed
 * neither reads nor writes: nothing of it reaches the image or the stream.
 */
import { execFile } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { failureText } from '../support/fails.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runGuest } from '../guest/guest.js';
import { CLI, startCapture, type CaptureProcess } from '../support/capture-process.js';
import { startNatsServer, type NatsServer } from '../support/nats-server.js';
import { makeTestCerts, qemuTlsArgs, type TestCerts } from '../support/tls-certs.js';
import { readRecords, replay, sha256 } from '../support/writes-stream.js';

const exec = promisify(execFile);

let work: string;
let nats: NatsServer;
let certs: TestCerts;
let capture: CaptureProcess | undefined;

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'gammaray-capture-tls-'));
  nats = await startNatsServer({ jetstream: true });
  certs = makeTestCerts(join(work, 'pki'));
}, 60_000);

afterAll(async () => {
  await capture?.stop();
  await nats?.stop();
  if (work) rmSync(work, { recursive: true, force: true });
});

describe('gammaray capture with NBD over TLS', () => {
  it('captures what a client with a certificate writes through TLS exactly, and serves nothing to others', async () => {
    const image = join(work, 'vm1.img');
    await exec('mkfs.ext4', ['-q', '-F', image, '32M']);
    const start = join(work, 'start.img');
    copyFileSync(image, start);
    const src = join(work, 'src');
    mkdirSync(join(src, 'etc'), { recursive: true });
    writeFileSync(join(src, 'etc', 'hostname'), 'tls-guest\n');
    writeFileSync(join(src, 'blob'), Buffer.alloc(500_000, 0x42));
    const populated = join(work, 'populated.img');
    await exec('mkfs.ext4', ['-q', '-F', '-d', src, populated, '32M']);

    capture = await startCapture(nats.url, { vm1: image }, ['--nbd-tls-cert', certs.serverCert, '--nbd-tls-key', certs.serverKey, '--nbd-tls-client-ca', certs.caCert]);
    expect(capture.logs()).toMatch(/"tls":true,"clientCertificates":true/);
    const port = capture.port;
    const [, , , opts] = qemuTlsArgs(certs.clientDir, port, 'vm1');
    await exec('qemu-img', ['convert', '-n', '--object', `tls-creds-x509,id=tls0,endpoint=client,dir=${certs.clientDir}`, '-f', 'raw', populated, '--target-image-opts', opts!]);
    const readBack = await exec('qemu-io', [...qemuTlsArgs(certs.clientDir, port, 'vm1'), '-c', 'read -v 1080 2']);
    expect(readBack.stdout).toContain('53 ef'); // the ext4 magic, read through TLS
    const recordsBefore = (await readRecords(nats.url, 'vm1')).length;

    // Without TLS, without a certificate, with a certificate of another CA: refused, nothing written.
    expect(await failureText(exec('qemu-io', ['-f', 'raw', '-c', 'write -P 0x11 0 64k', capture.url('vm1')]))).toContain('this server requires TLS');
    expect(await failureText(exec('qemu-io', [...qemuTlsArgs(certs.anonymousDir, port, 'vm1'), '-c', 'write -P 0x22 0 64k']))).toMatch(/TLS channel/);
    expect(await failureText(exec('qemu-io', [...qemuTlsArgs(certs.strangerDir, port, 'vm1'), '-c', 'write -P 0x33 0 64k']))).toMatch(/TLS channel/);
    expect(await failureText(exec('nbdinfo', [capture.url('vm1')]))).toMatch(/TLS|tls/);

    expect(await capture.stop()).toBe(0);
    capture = undefined;
    const records = await readRecords(nats.url, 'vm1');
    expect(records.length).toBe(recordsBefore);
    expect(sha256(readFileSync(image))).toBe(sha256(readFileSync(populated)));
    expect(sha256(replay(start, records))).toBe(sha256(readFileSync(image)));
  }, 120_000);

  it('a real guest boots its disk from the capture over TLS with a client certificate, and its writes are captured', async () => {
    const image = join(work, 'guest.img');
    await exec('mkfs.ext4', ['-q', '-F', image, '64M']);
    const start = join(work, 'guest-start.img');
    copyFileSync(image, start);
    capture = await startCapture(nats.url, { g1: image }, ['--nbd-tls-cert', certs.serverCert, '--nbd-tls-key', certs.serverKey, '--nbd-tls-client-ca', certs.caCert]);
    const res = await runGuest({
      nbd: capture.url('g1'),
      driveOpts: 'file.tls-creds=tls0',
      qemuArgs: ['-object', `tls-creds-x509,id=tls0,endpoint=client,dir=${certs.clientDir}`],
      workload: 'set -e\necho "written over TLS" > /mnt/tls.txt\nmkdir /mnt/d\nhead -c 200000 /dev/urandom > /mnt/d/r\nsync',
      timeoutMs: 120_000,
    });
    expect(res.status, res.console).toBe(0);
    expect(capture.logs()).toMatch(/"protocol":"TLSv1\.[23]","client":"hypervisor-1","msg":"nbd TLS negotiated"/);
    expect(await capture.stop()).toBe(0);
    capture = undefined;
    const cat = await exec('node', [CLI, 'cat', image, '/tls.txt']);
    expect(cat.stdout).toBe('written over TLS\n');
    expect(sha256(replay(start, await readRecords(nats.url, 'g1')))).toBe(sha256(readFileSync(image)));
  }, 180_000);

  it('refuses TLS settings that cannot work, saying which (exit 2)', async () => {
    const image = join(work, 'cfg.img');
    writeFileSync(image, Buffer.alloc(1 << 20));
    const notPem = join(work, 'not.pem');
    writeFileSync(notPem, 'hello');
    const cases: [string[], RegExp][] = [
      [['--nbd-tls-cert', certs.serverCert], /--nbd-tls-cert \(GAMMARAY_NBD_TLS_CERT\) and --nbd-tls-key \(GAMMARAY_NBD_TLS_KEY\) go together/],
      [['--nbd-tls-client-ca', certs.caCert], /--nbd-tls-client-ca \(GAMMARAY_NBD_TLS_CLIENT_CA\) needs --nbd-tls-cert and --nbd-tls-key/],
      [['--nbd-tls-cert', notPem, '--nbd-tls-key', certs.serverKey], /--nbd-tls-cert \(GAMMARAY_NBD_TLS_CERT\) must name a readable PEM file/],
      [['--nbd-tls-cert', certs.serverCert, '--nbd-tls-key', certs.caCert], /cannot be used: .*give a PEM certificate and its private key/],
    ];
    for (const [args, want] of cases) {
      const r = await exec('node', [CLI, 'capture', '--nats', nats.url, '--listen', '127.0.0.1:0', '--disk', `cfg=${image}`, ...args]).then(
        () => ({ code: 0, stderr: '' }),
        (e: { code: number; stderr: string }) => ({ code: e.code, stderr: e.stderr }),
      );
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr).toMatch(want);
      expect(r.stderr).not.toMatch(/\n\s+at /);
    }
  }, 60_000);
});
