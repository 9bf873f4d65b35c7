import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { natsConnectOptions, readNatsAuth } from '../src/index.js';

const dir = mkdtempSync(join(tmpdir(), 'gammaray-nats-auth-unit-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const fail = (m: string) => new Error(m);
/** A credentials file laid out as `nsc` writes it (the JWT and seed are well-formed, not valid). */
const CREDS = `-----BEGIN NATS USER JWT-----
eyJ0eXAiOiJKV1QiLCJhbGciOiJlZDI1NTE5LW5rZXkifQ.eyJqdGkiOiJYIn0.c2lnbmF0dXJl
------END NATS USER JWT------

************************* IMPORTANT *************************
NKEY Seed printed below can be used to sign and prove identity.
NKEYs are sensitive and should be treated as secrets.

-----BEGIN USER NKEY SEED-----
SUA${'B'.repeat(55)}
------END USER NKEY SEED------

*************************************************************
`;

describe('NATS auth settings', () => {
  it('are none by default, and a comma list of servers is several servers', () => {
    const auth = readNatsAuth({}, {}, fail);
    expect(auth.method).toBe('none');
    const o = natsConnectOptions('nats://a:4222, nats://b:4222,', 'svc', auth);
    expect(o).toMatchObject({ servers: ['nats://a:4222', 'nats://b:4222'], name: 'svc', maxReconnectAttempts: -1 });
    expect(o.user).toBeUndefined();
    expect(o.tls).toBeUndefined();
  });

  it('take a token or a user and password from the environment only, and TLS files from flags or env', () => {
    const ca = join(dir, 'ca.pem');
    writeFileSync(ca, 'x');
    const token = readNatsAuth({ natsTlsCa: ca }, { GAMMARAY_NATS_TOKEN: 's3cret' }, fail);
    expect(token).toMatchObject({ method: 'token', token: 's3cret', tls: { caFile: ca } });
    expect(natsConnectOptions('nats://a:1', 'x', token)).toMatchObject({ token: 's3cret', tls: { caFile: ca } });
    const user = readNatsAuth({}, { GAMMARAY_NATS_USER: 'u', GAMMARAY_NATS_PASSWORD: 'p' }, fail);
    expect(natsConnectOptions('nats://a:1', 'x', user)).toMatchObject({ user: 'u', pass: 'p' });
  });

  it('check nkey seed files and build an authenticator from them and from creds files', () => {
    const seed = join(dir, 'user.nk');
    writeFileSync(seed, `SUA${'B'.repeat(55)}\n`);
    const nkey = readNatsAuth({ natsNkey: seed }, {}, fail);
    expect(typeof natsConnectOptions('nats://a:1', 'x', nkey).authenticator).toBe('function');
    const notSeed = join(dir, 'bad.nk');
    writeFileSync(notSeed, 'hello');
    expect(() => readNatsAuth({ natsNkey: notSeed }, {}, fail)).toThrow(/does not hold a user nkey seed/);
    const creds = join(dir, 'u.creds');
    writeFileSync(creds, CREDS);
    expect(typeof natsConnectOptions('nats://a:1', 'x', readNatsAuth({ natsCreds: creds }, {}, fail)).authenticator).toBe('function');
    // Anything else was taken, and failed only at connect time with nats.js's "unable to parse credentials", exit 1.
    for (const [name, text] of [['garbage.creds', 'garbage\n'], ['jwt-only.creds', CREDS.slice(0, CREDS.indexOf('****'))], ['seed-first.creds', CREDS.slice(CREDS.indexOf('-----BEGIN USER'))]] as const) {
      writeFileSync(join(dir, name), text);
      expect(() => readNatsAuth({ natsCreds: join(dir, name) }, {}, fail), name).toThrow(`--nats-creds (GAMMARAY_NATS_CREDS): ${join(dir, name)} is not a NATS credentials file (a user JWT and its nkey seed, each between ----- lines, as nsc writes them)`);
    }
  });

  it('refuse contradictions, naming the settings', () => {
    const creds = join(dir, 'c.creds');
    writeFileSync(creds, CREDS);
    expect(() => readNatsAuth({ natsCreds: creds }, { GAMMARAY_NATS_TOKEN: 't' }, fail)).toThrow(/given 2 ways \(creds, token\)/);
    expect(() => readNatsAuth({}, { GAMMARAY_NATS_PASSWORD: 'p' }, fail)).toThrow(/without a user/);
    expect(() => readNatsAuth({ natsTlsKey: creds }, {}, fail)).toThrow(/go together/);
    expect(() => readNatsAuth({ natsTlsCa: join(dir, 'nope.pem') }, {}, fail)).toThrow(/--nats-tls-ca \(GAMMARAY_NATS_TLS_CA\): cannot read/);
  });
});
