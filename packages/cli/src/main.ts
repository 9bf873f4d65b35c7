import { Command, CommanderError, InvalidArgumentError } from 'commander';
import type { NatsAuthFlags } from '@gammaray/service-view';
import { runCat } from './commands/cat.js';
import { runCrawl } from './commands/crawl.js';
import { runFollow } from './commands/follow.js';
import { runLs } from './commands/ls.js';
import { runStat } from './commands/stat.js';
import { runTree } from './commands/tree.js';
import { checkMountPoint, runUp } from './commands/up.js';
import { ExitCode, isReaderError, RuntimeFailure, UserError } from './errors.js';
import { OutputClosedError, Terminal, type TerminalStreams } from './output.js';

/** Parses `--partition N`: a partition number, 0 meaning the whole image. */
function partitionNumber(value: string): number {
  const n = /^\d{1,6}$/.test(value) ? Number(value) : Number.NaN;
  if (!Number.isSafeInteger(n)) throw new InvalidArgumentError('expected a partition number (1, 2, ...; 0 = the whole image)');
  return n;
}

/** Commander usage errors as one `gammaray:` line that points at the help. */
/**
 * A service `gammaray up` started (env GAMMARAY_PARENT_PID) stops when that `up` is gone: killed with SIGKILL, it
 * cannot stop its children, and they would otherwise run on, reconnecting to whatever NATS next listens on the
 * same address (another `up`'s), where they would take its disks' leases. SIGTERM first (the service's own
 * orderly stop), then exit after 15 s if that hangs (a NATS that is gone).
 */
function exitWithParent(): void {
  const parent = Number(process.env['GAMMARAY_PARENT_PID']);
  if (!Number.isSafeInteger(parent) || parent <= 1) return;
  const timer = setInterval(() => {
    try {
      process.kill(parent, 0);
    } catch {
      clearInterval(timer);
      process.kill(process.pid, 'SIGTERM');
      setTimeout(() => process.exit(1), 15_000).unref();
    }
  }, 1_000);
  timer.unref();
}

/**
 * A service whose run has settled (stopped, or failed) exits within 2 s even if its NATS client still holds
 * timers (reconnecting to a NATS that is gone kept `gammaray inferencer` alive for good after its SIGTERM).
 */
function exitSoon(): void {
  setTimeout(() => process.exit(), 2_000).unref();
}

function configure(cmd: Command, term: Terminal, helpHint: string): Command {
  return cmd.exitOverride().configureOutput({
    writeOut: (s) => term.stdoutRaw(s),
    writeErr: (s) => term.stderrRaw(s),
    outputError: (s, write) => write(`gammaray: ${s.replace(/^error: /, '').replace(/\s*\n\s*/g, ' ').trim().replace(/\.$/, '')}; run '${helpHint}' for usage\n`),
  });
}

function buildProgram(term: Terminal, done: (code: ExitCode) => void): Command {
  const program = configure(new Command('gammaray'), term, 'gammaray --help')
    .description('Agentless introspection of virtual machines from their disks. Offline commands read raw disk or ext2/3/4 images.')
    .showSuggestionAfterError(true)
    .addHelpText(
      'after',
      '\nExit status: 0 success; 1 runtime failure or some entries unreadable (what could be read is printed); 2 usage or user error.',
    );

  configure(program.command('ls'), term, 'gammaray ls --help')
    .description('list a directory of the file system in IMAGE (default "/"), or a single entry')
    .argument('<image>', 'raw disk or file system image')
    .argument('[path]', 'path inside the file system; a trailing "/" follows a final symlink', '/')
    .option('-l, --long', 'long format: mode, links, uid, gid, size, mtime, name, symlink target')
    .option('-R, --recursive', 'list the whole subtree, the start included, as full paths')
    .option('--json', 'one JSON tree entry per line')
    .option('--hash', 'add the SHA-256 of each regular file')
    .option('--partition <n>', 'partition number (0 = the whole image)', partitionNumber)
    .option('--lv <vg/lv>', 'the LVM logical volume to read (of the partition, or of the PV on the whole image)')
    .option('--noload', 'do not replay the journal of a file system that needs recovery (as mount -o noload): read its metadata as last written home')
    .action(async (image: string, path: string, o: { long?: boolean; recursive?: boolean; json?: boolean; hash?: boolean; partition?: number; noload?: boolean; lv?: string }) => {
      done(await runLs(term, image, path, { long: !!o.long, recursive: !!o.recursive, json: !!o.json, hash: !!o.hash, partition: o.partition, noload: !!o.noload, lv: o.lv }));
    });

  configure(program.command('stat'), term, 'gammaray stat --help')
    .description('describe one entry (a final symlink is not followed)')
    .argument('<image>', 'raw disk or file system image')
    .argument('<path>', 'path inside the file system')
    .option('--json', 'the JSON tree entry')
    .option('--partition <n>', 'partition number (0 = the whole image)', partitionNumber)
    .option('--lv <vg/lv>', 'the LVM logical volume to read (of the partition, or of the PV on the whole image)')
    .option('--noload', 'do not replay the journal of a file system that needs recovery (as mount -o noload): read its metadata as last written home')
    .action(async (image: string, path: string, o: { json?: boolean; partition?: number; noload?: boolean; lv?: string }) => {
      done(await runStat(term, image, path, { json: !!o.json, partition: o.partition, noload: !!o.noload, lv: o.lv }));
    });

  configure(program.command('cat'), term, 'gammaray cat --help')
    .description("print a regular file's content (symlinks are followed; holes read as zeros)")
    .argument('<image>', 'raw disk or file system image')
    .argument('<path>', 'path inside the file system')
    .option('--partition <n>', 'partition number (0 = the whole image)', partitionNumber)
    .option('--lv <vg/lv>', 'the LVM logical volume to read (of the partition, or of the PV on the whole image)')
    .option('--noload', 'do not replay the journal of a file system that needs recovery (as mount -o noload): read its metadata as last written home')
    .action(async (image: string, path: string, o: { partition?: number; noload?: boolean; lv?: string }) => {
      done(await runCat(term, image, path, { partition: o.partition, noload: !!o.noload, lv: o.lv }));
    });

  configure(program.command('crawl'), term, 'gammaray crawl --help')
    .description('index every file of every ext2/3/4 file system in IMAGE')
    .argument('<image>', 'raw disk or file system image')
    .option('--out <file>', 'write the records as concatenated BSON documents to FILE')
    .option('--json', 'print the records as JSON lines')
    .option('--partition <n>', 'only this partition (0 = the whole image)', partitionNumber)
    .option('--lv <vg/lv>', 'the LVM logical volume to read (of the partition, or of the PV on the whole image)')
    .option('--noload', 'do not replay the journal of a file system that needs recovery (as mount -o noload): read its metadata as last written home')
    .addHelpText('after', '\nWithout --json, a summary (entries by type, errors) is printed on stdout.')
    .action(async (image: string, o: { out?: string; json?: boolean; partition?: number; noload?: boolean; lv?: string }) => {
      done(await runCrawl(term, image, { out: o.out, json: !!o.json, partition: o.partition, noload: !!o.noload, lv: o.lv }));
    });

  natsAuthOptions(configure(program.command('capture'), term, 'gammaray capture --help'))
    .description('serve disks over NBD and put every write into NATS JetStream (stream GAMMARAY_WRITES) before acknowledging it')
    .option('--nats <url>', 'NATS server URL (env GAMMARAY_NATS; default nats://127.0.0.1:4222)')
    .option('--listen <host:port>', 'NBD listen address (env GAMMARAY_LISTEN; default 127.0.0.1:10809)')
    .option('--disk <id=image>', 'serve raw IMAGE as disk ID (the NBD export name); repeat for more disks (env GAMMARAY_DISK=a=/x,b=/y)', collect, [])
    .option('--partition <id=n>', 'on partitioned disk ID, follow the file system of partition N (Linux numbering; 0 = the whole disk); default: the whole disk if it holds one, else its largest ext2/3/4 partition; repeat for more disks (env GAMMARAY_PARTITION=a=2,b=1)', collect, [])
    .option('--volume <vol=id:n>', 'also follow partition N of disk ID as a disk of its own named VOL (events gammaray.VOL.fs.*, its own tree in the view); repeat for more (env GAMMARAY_VOLUME=vm1-boot=vm1:2)', collect, [])
    .option('--replicas <n>', 'JetStream replicas for the stream and registry (env GAMMARAY_REPLICAS; 1 on one machine, 3 in a cluster)')
    .option('--metrics <host:port>', 'serve Prometheus metrics at http://HOST:PORT/metrics, and /healthz, /readyz (env GAMMARAY_METRICS)')
    .option('--trace <file>', "read gammaray's legacy binary QEMU trace from FILE ('-' = stdin) instead of serving NBD")
    .option('--listen-unix <path>', 'serve NBD on this unix socket (mode 0660) instead of TCP (env GAMMARAY_LISTEN_UNIX); QEMU: nbd+unix:///DISK?socket=PATH')
    .option('--nbd-tls-cert <file>', 'require TLS of NBD clients (NBD_OPT_STARTTLS) with this PEM certificate (env GAMMARAY_NBD_TLS_CERT; with --nbd-tls-key)')
    .option('--nbd-tls-key <file>', 'the PEM private key of --nbd-tls-cert (env GAMMARAY_NBD_TLS_KEY)')
    .option('--nbd-tls-client-ca <file>', 'NBD clients must present a certificate this PEM CA signed (env GAMMARAY_NBD_TLS_CLIENT_CA)')
    .option('--assume-raw <id>', 'serve disk ID as raw even though its image starts like a qcow2, VMDK, VDI, VHD, VHDX or QED file (repeat for more; env GAMMARAY_ASSUME_RAW=a,b)', collect, [])
    .addHelpText('after', '\nLogs are JSON lines (pino) on stdout. SIGTERM/SIGINT: stop accepting, drain in-flight requests, detach, exit.')
    .action(async (o: { nats?: string; listen?: string; disk: string[]; partition: string[]; volume: string[]; assumeRaw: string[]; replicas?: string; metrics?: string; trace?: string; listenUnix?: string; nbdTlsCert?: string; nbdTlsKey?: string; nbdTlsClientCa?: string }) => {
      // Loaded on demand: the offline commands never pay for NATS and pino.
      const svc = await import('@gammaray/service-capture');
      exitWithParent();
      try {
        done((await svc.runCapture({ ...o, disk: o.disk.length > 0 ? o.disk : undefined, partition: o.partition.length > 0 ? o.partition : undefined, volume: o.volume.length > 0 ? o.volume : undefined, assumeRaw: o.assumeRaw.length > 0 ? o.assumeRaw : undefined })) as ExitCode);
      } catch (err) {
        if (err instanceof svc.ConfigError) throw new UserError(err.message);
        throw serviceFailure('capture', err, o.nats, o.replicas);
      } finally {
        exitSoon();
      }
    });

  natsAuthOptions(configure(program.command('inferencer'), term, 'gammaray inferencer --help'))
    .description("keep each captured disk's file system in sync from its writes and publish file-level events (stream GAMMARAY_EVENTS)")
    .option('--nats <url>', 'NATS server URL (env GAMMARAY_NATS; default nats://127.0.0.1:4222)')
    .option('--replicas <n>', 'JetStream replicas for the events stream and the checkpoint bucket (env GAMMARAY_REPLICAS; 1 on one machine, 3 in a cluster)')
    .option('--metrics <host:port>', 'serve Prometheus metrics at http://HOST:PORT/metrics (env GAMMARAY_METRICS)')
    .option('--inline-limit <bytes>', 'largest write whose bytes travel inside its write event (env GAMMARAY_INLINE_LIMIT; default 65536)')
    .option('--checkpoint-interval <seconds>', 'how often each disk\'s state is checkpointed (env GAMMARAY_CHECKPOINT_INTERVAL; default 2)')
    .option('--disk <id>', 'consider only this disk; repeat for more (env GAMMARAY_DISK=a,b; default every disk of the registry; give every instance the same set)', collect, [])
    .option('--lease-ttl <seconds>', 'how long a disk lease lasts without renewal before another instance takes the disk over (env GAMMARAY_LEASE_TTL; default 5)')
    .option('--heartbeat <seconds>', 'how often the instance renews its registration and leases and rebalances (env GAMMARAY_HEARTBEAT; default 1; at most a third of the lease TTL)')
    .addHelpText('after', '\nInstances share the disks: each disk is owned by one instance at a time (KV gammaray-leases), spread evenly over the live instances (KV gammaray-workers).\nLogs are JSON lines (pino) on stdout. SIGTERM/SIGINT: hand every disk over (flush events, final checkpoint, release the lease), exit.')
    .action(async (o: { nats?: string; replicas?: string; metrics?: string; inlineLimit?: string; checkpointInterval?: string; disk: string[]; leaseTtl?: string; heartbeat?: string }) => {
      // Loaded on demand, like capture.
      const svc = await import('@gammaray/service-inferencer');
      exitWithParent();
      try {
        done((await svc.runInferencer({ ...o, disk: o.disk.length > 0 ? o.disk : undefined })) as ExitCode);
      } catch (err) {
        if (err instanceof svc.ConfigError) throw new UserError(err.message);
        throw serviceFailure('inferencer', err, o.nats, o.replicas);
      } finally {
        exitSoon();
      }
    });

  configure(program.command('up'), term, 'gammaray up --help')
    .description('run the whole pipeline on this machine: embedded NATS (unless --nats), capture, inferencer and view')
    .option('--image <file>', 'raw disk image to serve (repeat for more disks)', collect, [])
    .option('--disk <id>', 'disk id of the image at the same position (repeat; default: from the file name)', collect, [])
    .option('--partition <id=n>', 'follow partition N of disk ID (0: the whole disk; default: the whole disk, else its largest ext partition or LV); repeat for more disks', collect, [])
    .option('--volume <vol=id:n>', 'also follow partition N of disk ID as a disk of its own named VOL (e.g. its /boot); repeat for more', collect, [])
    .option('--mount <dir>', 'FUSE mount point of the live read-only view (DIR/<disk>/...)')
    .option('--data-dir <dir>', 'where the embedded NATS keeps its store and the services their logs (default ./gammaray-data)')
    .option('--nats <url>', 'use this NATS server (with JetStream) instead of starting one')
    .option('--listen <host:port>', 'NBD listen address of the capture (default 127.0.0.1:10809)')
    .option('--grpc <host:port>', 'gRPC address of the view (default 127.0.0.1:50051)')
    .addHelpText('after', '\nPrints the NBD URL to give QEMU, the gRPC address, the mount point and the event subjects. Ctrl-C stops everything cleanly (view, inferencer with a final checkpoint, capture after draining its writes, NATS).')
    .action(async (o: { image: string[]; disk: string[]; partition: string[]; volume: string[]; mount?: string; dataDir?: string; nats?: string; listen?: string; grpc?: string }) => {
      done(await runUp(term, o));
    });

  natsAuthOptions(configure(program.command('view'), term, 'gammaray view --help'))
    .description('serve every captured disk read-only over gRPC (and FUSE with --mount), from the replicated state in NATS')
    .option('--nats <url>', 'NATS server URL (env GAMMARAY_NATS; default nats://127.0.0.1:4222)')
    .option('--grpc <host:port>', 'gRPC listen address (env GAMMARAY_GRPC; default 127.0.0.1:50051)')
    .option('--mount <dir>', 'also mount the disks read-only at DIR/<disk>/ with FUSE (env GAMMARAY_MOUNT)')
    .option('--allow-other', 'let other users read the FUSE mount (env GAMMARAY_ALLOW_OTHER=1; needs user_allow_other in /etc/fuse.conf)')
    .option('--metrics <host:port>', 'serve Prometheus metrics at /metrics and health at /healthz, /readyz (env GAMMARAY_METRICS)')
    .option('--tls-cert <file>', 'serve gRPC over TLS with this certificate (PEM; env GAMMARAY_TLS_CERT)')
    .option('--tls-key <file>', 'the private key of --tls-cert (PEM; env GAMMARAY_TLS_KEY)')
    .option('--tls-client-ca <file>', 'require client certificates signed by this CA (PEM; env GAMMARAY_TLS_CLIENT_CA)')
    .option('--token <token>', 'require "authorization: Bearer TOKEN" on every gRPC call but health checks (env GAMMARAY_TOKEN, preferred: flags show in ps)')
    .option('--replicas <n>', 'JetStream replicas for the registry and checkpoint buckets if this process creates them (env GAMMARAY_REPLICAS)')
    .option('--disk <id>', 'serve only this disk; repeat for more (env GAMMARAY_DISK=a,b; default every disk of the registry)', collect, [])
    .addHelpText('after', '\nAny number of views may run: each rebuilds every disk\'s state from the inferencer\'s checkpoint and the write stream.\nLogs are JSON lines (pino) on stdout. SIGTERM/SIGINT: health NOT_SERVING, end watches, drain calls, unmount, exit.')
    .action(async (o: { nats?: string; grpc?: string; mount?: string; allowOther?: boolean; metrics?: string; tlsCert?: string; tlsKey?: string; tlsClientCa?: string; token?: string; replicas?: string; disk: string[] }) => {
      // A --mount libfuse refuses (not empty, a mount point, a file) is the user's to fix: said in one line, exit 2.
      const mount = o.mount ?? process.env['GAMMARAY_MOUNT'];
      if (mount) checkMountPoint(mount);
      // Loaded on demand, like capture.
      const svc = await import('@gammaray/service-view');
      exitWithParent();
      try {
        done((await svc.runView({ ...o, disk: o.disk.length > 0 ? o.disk : undefined })) as ExitCode);
      } catch (err) {
        if (err instanceof svc.ConfigError) throw new UserError(err.message);
        throw serviceFailure('view', err, o.nats, o.replicas);
      } finally {
        exitSoon();
      }
    });

  natsAuthOptions(configure(program.command('follow'), term, 'gammaray follow --help'))
    .description("print a disk's file-level events as they arrive (stream GAMMARAY_EVENTS), one line each")
    .argument('<disk>', 'disk id')
    .argument('[glob]', "only events whose path matches: * and ? within a name, ** across names, [...], {a,b}; without a leading / it matches at any depth ('*.log')")
    .option('--kinds <k1,k2>', 'only these kinds: create,delete,rename,link,unlink,write,truncate,attr,snapshot,corrupt,resync')
    .option('--json', 'one JSON object per event (streamSeq, the event fields, ts as ISO 8601, data as base64)')
    .option('--from-start', 'start at the first event the stream holds (default: new events only)')
    .option('--from-seq <n>', 'start at this GAMMARAY_EVENTS sequence (resume with the last streamSeq + 1)')
    .option('--since <time>', "start at the first event stored at or after TIME: ISO 8601 ('2026-11-28T05:30:00Z') or that long ago ('90s', '10m', '2h', '1d')")
    .option('--nats <url>', 'NATS server URL (env GAMMARAY_NATS; default nats://127.0.0.1:4222)')
    .addHelpText('after', '\nLines: STREAMSEQ TS KIND PATH DETAILS. Disk-level events (snapshot, corrupt, resync) pass any glob. Runs until SIGINT/SIGTERM (exit 0).')
    .action(async (disk: string, glob: string | undefined, o: { kinds?: string; json?: boolean; fromStart?: boolean; fromSeq?: string; since?: string; nats?: string } & NatsAuthFlags) => {
      done(await runFollow(term, disk, glob, { ...o, nats: o.nats, kinds: o.kinds, json: !!o.json, fromStart: !!o.fromStart, fromSeq: o.fromSeq, since: o.since }));
    });

  configure(program.command('tree'), term, 'gammaray tree --help')
    .description("print a disk's current tree from a gammaray view (gRPC GetTree), one path per line")
    .argument('<disk>', 'disk id')
    .option('--json', 'one JSON tree entry per line')
    .option('--hash', 'add the SHA-256 of each regular file')
    .option('--grpc <host:port>', 'address of a gammaray view (env GAMMARAY_GRPC; default 127.0.0.1:50051)')
    .option('--token <token>', 'bearer token of the view (env GAMMARAY_TOKEN)')
    .option('--tls-ca <file>', "connect over TLS, checking the view's certificate against this CA (PEM)")
    .option('--tls-cert <file>', 'client certificate for TLS (PEM; with --tls-key)')
    .option('--tls-key <file>', 'private key of --tls-cert (PEM)')
    .action(async (disk: string, o: { json?: boolean; hash?: boolean; grpc?: string; token?: string; tlsCa?: string; tlsCert?: string; tlsKey?: string }) => {
      done(await runTree(term, disk, { grpc: o.grpc, json: !!o.json, hash: !!o.hash, token: o.token, tlsCa: o.tlsCa, tlsCert: o.tlsCert, tlsKey: o.tlsKey }));
    });

  return program;
}


/**
 * The NATS credential and TLS flags every command that talks to NATS takes; secrets (GAMMARAY_NATS_PASSWORD,
 * GAMMARAY_NATS_TOKEN) come from the environment only, so they never show in process listings.
 */
function natsAuthOptions(cmd: Command): Command {
  return cmd
    .option('--nats-creds <file>', 'NATS credentials file (user JWT + nkey seed) (env GAMMARAY_NATS_CREDS)')
    .option('--nats-nkey <file>', 'file holding a NATS user nkey seed (env GAMMARAY_NATS_NKEY)')
    .option('--nats-user <name>', 'NATS user; the password comes from env GAMMARAY_NATS_PASSWORD (env GAMMARAY_NATS_USER); a token from env GAMMARAY_NATS_TOKEN')
    .option('--nats-tls-ca <file>', 'connect to NATS over TLS, verifying the server against this CA (PEM) (env GAMMARAY_NATS_TLS_CA)')
    .option('--nats-tls-cert <file>', 'client certificate for NATS TLS (PEM; with --nats-tls-key) (env GAMMARAY_NATS_TLS_CERT)')
    .option('--nats-tls-key <file>', 'private key of --nats-tls-cert (PEM) (env GAMMARAY_NATS_TLS_KEY)');
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

/**
 * Runs the gammaray CLI on `argv` (as process.argv: node, script, args...)
 * and resolves to the exit status; never rejects for user or disk errors.
 * `streams` defaults to the process's stdout and stderr.
 */
export async function main(argv: readonly string[], streams: TerminalStreams = { stdout: process.stdout, stderr: process.stderr }): Promise<number> {
  const term = new Terminal(streams);
  if (argv.length <= 2) {
    term.fail("missing command; run 'gammaray --help' for the list of commands");
    return ExitCode.usage;
  }
  let code: ExitCode = ExitCode.ok;
  const program = buildProgram(term, (c) => {
    code = c;
  });
  try {
    await program.parseAsync([...argv]);
    return code;
  } catch (err) {
    return report(term, err);
  }
}

async function report(term: Terminal, err: unknown): Promise<number> {
  if (err instanceof CommanderError) {
    // Commander already printed help or the one-line usage error.
    if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version') return ExitCode.ok;
    if (err.code === 'commander.help') return err.exitCode === 0 ? ExitCode.ok : ExitCode.usage;
    return ExitCode.usage;
  }
  if (err instanceof OutputClosedError) return ExitCode.ok;
  // Whatever was listed before the failure still goes out, ahead of the error line.
  try {
    await term.out.flush();
  } catch (flushErr) {
    if (flushErr instanceof OutputClosedError) return ExitCode.ok;
  }
  if (err instanceof UserError) {
    term.fail(err.message);
    return ExitCode.usage;
  }
  if (err instanceof RuntimeFailure || isReaderError(err)) {
    term.fail((err as Error).message);
    return ExitCode.failure;
  }
  const e = err as Error | undefined;
  term.stderrRaw(`gammaray: internal error: ${e?.stack ?? String(err)}\n`);
  return ExitCode.failure;
}

/** JetStream API error codes serviceFailure tells apart: replicas > 1 on a single server; too few peers. */
const JS_REPLICAS_NOT_CLUSTERED = 10074;
const JS_NO_SUITABLE_PEERS = 10005;

/**
 * What a service's failure means to the user: a port in use, an image path that is missing, a directory or not
 * permitted, and `--replicas` more than the NATS server or cluster can hold are the user's to fix (exit 2,
 * saying how); an unreachable NATS server and anything else are runtime failures (exit 1).
 */
function serviceFailure(service: string, err: unknown, nats: string | undefined, replicas: string | undefined): Error {
  const e = err as (NodeJS.ErrnoException & { address?: string; port?: number; api_error?: { err_code?: number } }) | undefined;
  const message = e?.message ?? String(err);
  const url = nats ?? process.env['GAMMARAY_NATS'] ?? 'nats://127.0.0.1:4222';
  // --replicas is the user's choice: a JetStream that cannot hold that many copies is theirs to fix.
  const n = replicas ?? process.env['GAMMARAY_REPLICAS'] ?? '1';
  if (e?.api_error?.err_code === JS_REPLICAS_NOT_CLUSTERED || /replicas > 1 not supported in non-clustered mode/i.test(message)) {
    return new UserError(`${service}: --replicas ${n} needs a NATS cluster, but ${url} is a single server (not clustered): pass --replicas 1 (GAMMARAY_REPLICAS=1) on a single server, or use a NATS cluster of at least ${n} servers`);
  }
  if (Number(n) > 1 && (e?.api_error?.err_code === JS_NO_SUITABLE_PEERS || /no suitable peers for placement/i.test(message))) {
    return new UserError(`${service}: --replicas ${n} needs ${n} JetStream servers in the NATS cluster at ${url}, and it has fewer (${message}): pass --replicas with at most its number of servers, or add servers`);
  }
  // A unix socket (--listen-unix): the error names its path (ours) or its address (listen's own).
  const sock = e?.path ?? (typeof e?.address === 'string' && e.address.startsWith('/') ? e.address : undefined);
  if (sock !== undefined && e?.code === 'EADDRINUSE') return new UserError(`${service}: ${sock} is a socket another process listens on: stop that process, or pass another --listen-unix PATH`);
  if (sock !== undefined && e?.code === 'EEXIST') return new UserError(`${service}: ${sock} exists and is not a socket: remove it, or pass another --listen-unix PATH`);
  if (typeof e?.address === 'string' && e.address.startsWith('/') && (e.code === 'ENOENT' || e.code === 'EACCES' || e.code === 'EPERM')) {
    return new UserError(`${service}: cannot make the socket ${e.address} (${e.code}): its directory must exist and be writable by this user`);
  }
  if (e?.code === 'EADDRINUSE' || /EADDRINUSE/.test(message)) {
    const where = e?.address !== undefined ? `${e.address}:${e.port}` : 'its address';
    return new UserError(`${service}: ${where} is already in use by another process: stop that process, or pass another HOST:PORT (--listen, --grpc or --metrics)`);
  }
  // A qcow2 (or other container) image given as a raw one: the message says how to serve it.
  if ((err as Error | undefined)?.name === 'ImageFormatError') return new UserError(`${service}: ${message}`);
  if (e?.path !== undefined && e.code === 'ENOENT') return new UserError(`${service}: ${e.path} does not exist: give an existing raw disk image (--disk ID=IMAGE)`);
  if (e?.path !== undefined && e.code === 'EISDIR') return new UserError(`${service}: ${e.path} is a directory: give a raw disk image file (--disk ID=IMAGE)`);
  if (e?.path !== undefined && (e.code === 'EACCES' || e.code === 'EPERM' || e.code === 'EROFS')) {
    return new UserError(`${service}: ${e.path} cannot be opened read-write by this user (${e.code}): the capture serves it to the VM read-write`);
  }
  if (/connection refused|ECONNREFUSED/i.test(message)) {
    return new RuntimeFailure(`${service}: cannot connect to NATS at ${url}: connection refused; start nats-server or pass --nats URL`, { cause: err });
  }
  return new RuntimeFailure(`${service} failed: ${message}`, { cause: err });
}
