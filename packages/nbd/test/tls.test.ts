/**
 * NBD over TLS (NBD_OPT_STARTTLS, the protocol's FORCEDTLS mode) with real clients: qemu-io and qemu-img (QEMU's
 * NBD client, the one a VM uses) and nbdinfo (libnbd), with x509 credentials made by openssl. Without TLS, or with
 * a client certificate the server's CA did not sign, a client gets nothing; the raw client checks the option
 * replies the protocol asks for.
 */
import { execFile } from 'node:child_process';
import { createSecureContext } from 'node:tls';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { failureText } from '../../../test/support/fails.js';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { NbdServer } from '../src/index.js';
import { makeTestCerts, qemuTlsArgs, type TestCerts } from '../../../test/support/tls-certs.js';
import { MemoryDisk, MemoryProvider } from './memory-export.js';
import { ERR, REP_ACK, RawClient } from './raw-client.js';
import { waitFor } from './wait-for.js';

const run = promisify(execFile);
const MiB = 1 << 20;
const OPT_EXPORT_NAME = 1;
const OPT_ABORT = 2;
const OPT_LIST = 3;
const OPT_STARTTLS = 5;
const OPT_GO = 7;
const REP_ERR_INVALID = ERR(3);
const REP_ERR_TLS_REQD = ERR(5);

describe('NbdServer with TLS required', () => {
  const work = mkdtempSync(join(tmpdir(), 'nbd-tls-'));
  let certs: TestCerts;
  const disk = new MemoryDisk('disk1', 16 * MiB, { exclusive: true });
  let server: NbdServer;
  let port = 0;

  beforeAll(async () => {
    certs = makeTestCerts(join(work, 'pki'));
    const secureContext = createSecureContext({ cert: readFileSync(certs.serverCert), key: readFileSync(certs.serverKey), ca: readFileSync(certs.caCert) });
    server = new NbdServer({ provider: new MemoryProvider([disk]), tls: { secureContext, requireClientCert: true }, handshakeTimeoutMs: 3_000 });
    port = (await server.listen('127.0.0.1', 0)).port;
  }, 60_000);
  afterAll(async () => {
    await server?.close();
    rmSync(work, { recursive: true, force: true });
  });
  beforeEach(async () => {
    await waitFor(() => server.connections === 0);
  });

  it('qemu-io writes and reads back over TLS with a client certificate the CA signed; qemu-img sees the size', async () => {
    const w = await run('qemu-io', [...qemuTlsArgs(certs.clientDir, port, 'disk1'), '-c', 'write -P 0x5a 1M 64k', '-c', 'flush', '-c', 'read -P 0x5a 1M 64k']);
    expect(w.stdout).toContain('wrote 65536/65536 bytes at offset 1048576');
    expect(w.stdout).not.toContain('Pattern verification failed');
    expect(disk.data.subarray(MiB, MiB + 65536).every((b) => b === 0x5a)).toBe(true);
    const info = await run('qemu-img', ['info', '--output=json', ...qemuTlsArgs(certs.clientDir, port, 'disk1')]);
    expect(JSON.parse(info.stdout)['virtual-size']).toBe(16 * MiB);
  });

  it('nbdinfo (libnbd) connects with TLS required', async () => {
    const { stdout } = await run('nbdinfo', ['--json', `nbds://127.0.0.1:${port}/disk1?tls-certificates=${certs.clientDir}`]);
    expect(JSON.parse(stdout).exports[0]['export-size']).toBe(16 * MiB);
  });

  it('refuses a client without TLS, one without a certificate, and one whose certificate another CA signed', async () => {
    const before = Buffer.from(disk.data.subarray(0, 4096));
    expect(await failureText(run('qemu-io', ['-f', 'raw', '-c', 'write -P 0x11 0 4k', `nbd://127.0.0.1:${port}/disk1`]))).toContain('this server requires TLS: send NBD_OPT_STARTTLS first');
    expect(await failureText(run('nbdinfo', [`nbd://127.0.0.1:${port}/disk1`]))).toMatch(/TLS|tls/);
    // Both are refused by this server during the handshake (QEMU itself is content with its credentials); with
    // TLS 1.3 the client hears of it at its next read or write.
    expect(await failureText(run('qemu-io', [...qemuTlsArgs(certs.anonymousDir, port, 'disk1'), '-c', 'write -P 0x22 0 4k']))).toMatch(/Cannot (read from|write to) TLS channel/);
    expect(await failureText(run('qemu-io', [...qemuTlsArgs(certs.strangerDir, port, 'disk1'), '-c', 'write -P 0x33 0 4k']))).toMatch(/Cannot (read from|write to) TLS channel/);
    expect(Buffer.from(disk.data.subarray(0, 4096)).equals(before)).toBe(true);
    await waitFor(() => server.connections === 0);
  });

  it('answers options before STARTTLS as the protocol says', async () => {
    const c = await RawClient.connect(port);
    await c.greet();
    c.sendOption(OPT_LIST);
    expect((await c.readOptReply()).type).toBe(REP_ERR_TLS_REQD);
    const r = await c.go('disk1');
    expect(r.at(-1)!.type).toBe(REP_ERR_TLS_REQD);
    c.sendOption(OPT_STARTTLS, Buffer.from('x'));
    expect((await c.readOptReply()).type).toBe(REP_ERR_INVALID);
    c.sendOption(OPT_ABORT);
    expect((await c.readOptReply()).type).toBe(REP_ACK);
    await c.waitClosed();

    // NBD_OPT_EXPORT_NAME has no error reply: before TLS it ends the session.
    const d = await RawClient.connect(port);
    await d.greet();
    d.sendOption(OPT_EXPORT_NAME, Buffer.from('disk1'));
    await d.waitClosed();

    // A client that sends a TLS ClientHello's worth of garbage after STARTTLS's ACK is dropped, and one that
    // pipelines an option after STARTTLS without waiting for the ACK is too.
    const e = await RawClient.connect(port);
    await e.greet();
    e.sendOption(OPT_STARTTLS);
    expect((await e.readOptReply()).type).toBe(REP_ACK);
    e.write(Buffer.alloc(64, 0x41));
    await e.waitClosed();
    const f = await RawClient.connect(port);
    await f.greet();
    const h = Buffer.alloc(16);
    h.write('IHAVEOPT', 0, 'latin1');
    h.writeUInt32BE(OPT_STARTTLS, 8);
    const g = Buffer.from(h);
    g.writeUInt32BE(OPT_GO, 8);
    f.write(Buffer.concat([h, g]));
    await f.waitClosed();
    await waitFor(() => server.connections === 0);
  });

  it('drops a client that stalls in the TLS handshake once the negotiation time is up', async () => {
    const c = await RawClient.connect(port);
    await c.greet();
    c.sendOption(OPT_STARTTLS);
    expect((await c.readOptReply()).type).toBe(REP_ACK);
    const t0 = Date.now();
    await c.waitClosed();
    expect(Date.now() - t0).toBeLessThan(5_000);
    await waitFor(() => server.connections === 0);
  }, 10_000);
});

describe('NbdServer without TLS', () => {
  it('refuses NBD_OPT_STARTTLS as unsupported and goes on in plaintext', async () => {
    const disk = new MemoryDisk('disk1', MiB, { exclusive: true });
    const server = new NbdServer({ provider: new MemoryProvider([disk]) });
    const { port } = await server.listen('127.0.0.1', 0);
    try {
      const c = await RawClient.connect(port);
      await c.greet();
      c.sendOption(OPT_STARTTLS);
      expect((await c.readOptReply()).type).toBe(ERR(1));
      expect((await c.go('disk1')).at(-1)!.type).toBe(REP_ACK);
      c.socket.destroy();
    } finally {
      await server.close();
    }
  });
});
