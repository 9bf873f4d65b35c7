/**
 * Test certificates made with the real openssl: a CA, a server certificate for 127.0.0.1/localhost, a client
 * certificate it signed, and a client certificate from another CA. Also laid out as QEMU's and libnbd's x509
 * credential directories (`ca-cert.pem`, `client-cert.pem`, `client-key.pem`), so that qemu-io, qemu-img and
 * nbdinfo can be pointed at them.
 */
import { execFileSync } from 'node:child_process';
import { appendFileSync, copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface TestCerts {
  readonly caCert: string;
  readonly serverCert: string;
  readonly serverKey: string;
  /** A QEMU/libnbd client credentials directory with a client certificate the CA signed. */
  readonly clientDir: string;
  /** The same layout with a client certificate of another CA (ca-cert.pem: the server's CA and that one). */
  readonly strangerDir: string;
  /** Only the CA (no client certificate): a client that verifies the server but cannot prove who it is. */
  readonly anonymousDir: string;
}

const openssl = (dir: string, args: string[]): void => {
  execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
};

function leaf(dir: string, ca: string, name: string, cn: string, ext: string): void {
  openssl(dir, ['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${name}-key.pem`, '-out', `${name}.csr`, '-subj', `/CN=${cn}`]);
  writeFileSync(join(dir, `${name}.ext`), ext);
  openssl(dir, ['x509', '-req', '-in', `${name}.csr`, '-CA', `${ca}-cert.pem`, '-CAkey', `${ca}-key.pem`, '-CAcreateserial', '-out', `${name}-cert.pem`, '-days', '2', '-extfile', `${name}.ext`]);
}

function ca(dir: string, name: string, cn: string): void {
  writeFileSync(join(dir, `${name}.ext`), 'basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n');
  openssl(dir, ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${name}-key.pem`, '-out', `${name}-cert.pem`, '-days', '2', '-subj', `/CN=${cn}`, '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
}

/** Makes the certificates in `dir` (created). */
export function makeTestCerts(dir: string): TestCerts {
  mkdirSync(dir, { recursive: true });
  ca(dir, 'ca', 'gammaray test CA');
  ca(dir, 'other-ca', 'someone else');
  const usage = 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n';
  leaf(dir, 'ca', 'server', 'localhost', `${usage}extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n`);
  leaf(dir, 'ca', 'client', 'hypervisor-1', `${usage}extendedKeyUsage=clientAuth\n`);
  leaf(dir, 'other-ca', 'stranger', 'intruder', `${usage}extendedKeyUsage=clientAuth\n`);
  const layout = (sub: string, cert: string | undefined, alsoTrust?: string): string => {
    const d = join(dir, sub);
    mkdirSync(d, { recursive: true });
    copyFileSync(join(dir, 'ca-cert.pem'), join(d, 'ca-cert.pem'));
    // QEMU checks its own certificate against ca-cert.pem too: the stranger's file also holds its own CA.
    if (alsoTrust) appendFileSync(join(d, 'ca-cert.pem'), readFileSync(join(dir, `${alsoTrust}-cert.pem`)));
    if (cert) {
      copyFileSync(join(dir, `${cert}-cert.pem`), join(d, 'client-cert.pem'));
      copyFileSync(join(dir, `${cert}-key.pem`), join(d, 'client-key.pem'));
    }
    return d;
  };
  return {
    caCert: join(dir, 'ca-cert.pem'),
    serverCert: join(dir, 'server-cert.pem'),
    serverKey: join(dir, 'server-key.pem'),
    clientDir: layout('client', 'client'),
    strangerDir: layout('stranger', 'stranger', 'other-ca'),
    anonymousDir: layout('anonymous', undefined),
  };
}

/** qemu-io / qemu-img arguments for an NBD export over TLS with the credentials in `dir`. */
export function qemuTlsArgs(dir: string, port: number, exportName: string): string[] {
  return ['--object', `tls-creds-x509,id=tls0,endpoint=client,dir=${dir}`, '--image-opts', `driver=nbd,host=127.0.0.1,port=${port},export=${exportName},tls-creds=tls0`];
}
