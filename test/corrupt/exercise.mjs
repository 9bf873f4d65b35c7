// Worker for the corrupt-input test: applies one mutation to an in-memory
// image, reads everything the library offers, and reports what happened.
// Runs the built library (dist/), so a runaway case can be terminated by the
// parent's watchdog (a worker can be killed mid-loop; an in-process call cannot).
import { parentPort } from 'node:worker_threads';
import { readFileSync } from 'node:fs';
import { MemoryBlockSource, DiskError } from '@gammaray/disk';
import { Ext4Volume, Ext4Error, walk } from '@gammaray/ext4';

const images = new Map();
const READ_CAP = 1 << 20;

function typed(err) {
  return err instanceof Ext4Error || err instanceof DiskError;
}

async function exercise(bytes) {
  const errors = [];
  const untyped = [];
  const note = (err) => {
    if (typed(err)) errors.push(err.kind ?? err.name);
    else untyped.push(`${err?.name}: ${err?.message}\n${err?.stack}`);
  };
  let vol;
  try {
    vol = await Ext4Volume.open(new MemoryBlockSource(bytes));
  } catch (err) {
    note(err);
    return { errors, untyped, entries: 0 };
  }
  let entries = 0;
  try {
    for await (const it of walk(vol)) {
      entries++;
      for (const e of it.errors) note(e);
      const inode = it.inode;
      if (!inode) continue;
      try {
        if (inode.type === 'file') await vol.readFile(inode, 0, Math.min(inode.size, READ_CAP));
        if (inode.type === 'symlink') await vol.readLink(inode);
        if (inode.type === 'file' || inode.type === 'dir') await vol.blockMap(inode);
        await vol.readXattrs(inode);
      } catch (err) {
        note(err);
      }
    }
  } catch (err) {
    note(err);
  }
  try {
    await vol.journalSuperblock();
  } catch (err) {
    note(err);
  }
  for (const p of ['/', '/d1/d2/f', '/link', '/hard', '/missing/x']) {
    try {
      await vol.lookup(p, true);
    } catch (err) {
      note(err);
    }
  }
  return { errors, untyped, entries };
}

parentPort.on('message', async (job) => {
  let img = images.get(job.image);
  if (!img) {
    img = readFileSync(job.image);
    images.set(job.image, img);
  }
  const saved = [];
  for (const m of job.mutations) {
    saved.push({ offset: m.offset, bytes: Buffer.from(img.subarray(m.offset, m.offset + m.bytes.length)) });
    img.set(m.bytes, m.offset);
  }
  const t0 = performance.now();
  let result;
  try {
    result = await exercise(img);
  } catch (err) {
    result = { errors: [], untyped: [`escaped: ${err?.stack ?? err}`], entries: 0 };
  }
  const ms = performance.now() - t0;
  for (const s of saved.reverse()) img.set(s.bytes, s.offset);
  parentPort.postMessage({ id: job.id, ms, heap: process.memoryUsage().heapUsed, ...result });
});
