// What both view benches stand up before their own inferencer and view: a nats-server with JetStream in the
// work dir and `gammaray capture` serving `image` as disk `disk`, each stopped by a function pushed on `cleanups`.
import { join } from 'node:path';
import { freePort, logHas, probe, start, stop as stopChild, waitFor } from '../lib/procs.mjs';

const NATS_SERVER = process.env.NATS_SERVER ?? 'nats-server';

/** Starts nats-server and the capture; resolves with the NATS URL once the capture serves NBD. */
export async function startNatsAndCapture({ cli, work, image, disk, cleanups, Failure }) {
  const natsPort = await freePort();
  const nats = start(NATS_SERVER, ['-js', '-a', '127.0.0.1', '-p', String(natsPort), '-sd', join(work, 'js')], { logFile: join(work, 'nats.log') });
  cleanups.push(() => stopChild(nats, 5_000));
  await waitFor('nats-server', nats, () => probe(natsPort, 'INFO'), 20_000, undefined, Failure);
  const natsUrl = `nats://127.0.0.1:${natsPort}`;
  const capLog = join(work, 'capture.log');
  const capture = start('node', [cli, 'capture', '--nats', natsUrl, '--listen', `127.0.0.1:${await freePort()}`, '--disk', `${disk}=${image}`], { logFile: capLog });
  cleanups.push(() => stopChild(capture, 10_000));
  await waitFor('gammaray capture', capture, logHas(capLog, 'serving NBD'), 30_000, capLog, Failure);
  return natsUrl;
}
