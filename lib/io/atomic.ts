// Crash-safe file and checkpoint-directory writes.
//
// writeFileAtomic: the file is written to a sibling temp file, fsynced, renamed over the
// target and the directory fsynced: a reader sees the old bytes or the new bytes, never a
// mix, and a crash at any point leaves the previous file intact (plus, at worst, a temp file).
//
// writeDirAtomic replaces the files it is given inside a checkpoint directory, in place, and
// leaves every other file there alone (the training log, a user's notes). The files change
// together, as one commit:
//   1. stage: each file is written to `<name>.tmp-<pid>-<hex>` in the directory and fsynced,
//      then the directory is fsynced;
//   2. commit: a journal `.nodegrad-commit-<pid>-<hex>` listing the staged -> final renames
//      (and the files the save deletes) is written atomically (temp, fsync, rename, fsync
//      the directory). A crash before this point leaves the old checkpoint; after it, the new
//      one is decided;
//   3. apply: the staged files are renamed over their final names, the deleted ones unlinked,
//      the directory fsynced, and the journal removed.
// Recovery runs at the next save and at every load (resolveCheckpointDir): a journal whose
// process is gone is applied again (renames whose staged file is already gone are done), and
// the temporaries of processes that are gone are removed. A journal of a live process is a
// save in progress, which a reader waits for. A load therefore sees all the old files or all
// the new ones, and the names stay the fixed ones other tools read (model.safetensors, ...).
//
// Ownership: every temporary and journal carries the writer's pid and a random tag. A pid is
// alive if `kill(pid, 0)` finds it; in this process, a tag is alive while its write runs (a
// restarted process that got the pid of a killed one, as pid 1 in containers, would
// otherwise never clean up). Only names matching these patterns are ever removed.
//
// Earlier versions swapped whole directories and could leave `dir.tmp-<pid>-<hex>` and
// `dir.old-<time>-<pid>-<hex>` siblings: those of processes that are gone are removed, and
// when `dir` itself is missing the newest `dir.old-*` (the last complete checkpoint) is
// read, or moved back by the next save.
//
// One writer per directory at a time: concurrent saves to the same directory are not
// coordinated beyond a save waiting for a live journal. A reader in another process that
// reads while a save applies its renames can still see a mix.
import { randomBytes } from 'node:crypto';
import { constants as fsc } from 'node:fs';
import { lstat, mkdir, open, readdir, readFile, rename, rm, stat, type FileHandle } from 'node:fs/promises';
import path from 'node:path';

/** Writes a file's contents through an open handle (e.g. streaming tensors one by one). */
export type WriteFn = (fh: FileHandle) => Promise<void>;
export type FileContents = Buffer | Uint8Array | string | WriteFn;

export interface WriteDirOptions {
  /**
   * Files of the directory that this save replaces by leaving them out (e.g. weight shards
   * of an earlier save): deleted in the same commit. Names given in `files` are never deleted.
   */
  remove?: readonly string[] | ((name: string) => boolean);
}

export interface ResolveOptions {
  /** Return `dir` unchanged when there is no checkpoint at all, instead of throwing. */
  missingOk?: boolean;
  /** How long to wait for a save in progress in another process (ms, default 60000). */
  waitMs?: number;
}

const TEMP = /^(.+)\.tmp-(\d+)-([0-9a-f]{12})$/;
const JOURNAL = /^\.nodegrad-commit-(\d+)-([0-9a-f]{12})$/;
/** Tags of this process's writes in progress (see "Ownership" above). */
const inFlight = new Set<string>();

function tag(): string {
  return `${process.pid}-${randomBytes(6).toString('hex')}`;
}

/** Whether the writer that made a temporary or journal tagged `<pid>-<hex>` may still use it. */
function ownerAlive(pid: number, t: string): boolean {
  if (pid === process.pid) return inFlight.has(t);
  if (!Number.isSafeInteger(pid) || pid <= 0) return false; // kill(0) would signal our own group
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM'; // alive, another user's
  }
}

function errCode(e: unknown): string | undefined {
  return (e as NodeJS.ErrnoException).code;
}

async function fsyncDir(dir: string): Promise<void> {
  let fh: FileHandle | undefined;
  try {
    fh = await open(dir, fsc.O_RDONLY);
    await fh.sync();
  } catch (e) {
    // Some platforms (Windows) and file systems cannot open or fsync a directory.
    const code = errCode(e);
    if (code !== 'EISDIR' && code !== 'EPERM' && code !== 'EINVAL' && code !== 'EACCES' && code !== 'ENOTSUP') throw e;
  } finally {
    await fh?.close();
  }
}

async function writeContents(fh: FileHandle, data: FileContents): Promise<void> {
  if (typeof data === 'function') await data(fh);
  else if (typeof data === 'string') await fh.writeFile(data, 'utf8');
  else if (data instanceof Uint8Array) await fh.writeFile(data);
  else throw new Error(`nodegrad: writeFileAtomic: contents must be a Buffer, Uint8Array, string or write function (got ${typeof data})`);
}

/** Creates `file` (which must not exist), writes `data` into it and fsyncs it. */
async function writeSynced(file: string, data: FileContents): Promise<void> {
  const fh = await open(file, 'wx', 0o644);
  try {
    await writeContents(fh, data);
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** writeFileAtomic with a given tag, so a save's journal temp is owned like its other temps. */
async function writeFileTagged(file: string, data: FileContents, t: string): Promise<void> {
  const tmp = `${file}.tmp-${t}`;
  try {
    await writeSynced(tmp, data);
    await rename(tmp, file);
  } catch (e) {
    await rm(tmp, { force: true });
    throw e;
  }
  await fsyncDir(path.dirname(path.resolve(file)));
}

/**
 * Atomically replaces `file` with `data` (bytes, a string written as UTF-8, or an async
 * function that writes through the file handle). On any error the temp file is removed
 * and the previous `file` is left untouched.
 */
export async function writeFileAtomic(file: string, data: FileContents): Promise<void> {
  if (typeof file !== 'string' || file === '') throw new Error('nodegrad: writeFileAtomic: path must be a non-empty string');
  const t = tag();
  inFlight.add(t);
  try {
    await writeFileTagged(file, data, t);
  } finally {
    inFlight.delete(t);
  }
}

async function exists(p: string): Promise<'dir' | 'file' | null> {
  try {
    return (await stat(p)).isDirectory() ? 'dir' : 'file';
  } catch (e) {
    if (errCode(e) === 'ENOENT') return null;
    throw e;
  }
}

async function names(dir: string): Promise<string[]> {
  try {
    return await readdir(dir);
  } catch (e) {
    if (errCode(e) === 'ENOENT' || errCode(e) === 'ENOTDIR') return [];
    throw e;
  }
}

// ---- directories of earlier versions (whole-directory swaps) ------------------------------

/** The `dir.old-*` siblings of `dir`, newest first, with their owner when the name has one. */
async function oldCopies(dir: string): Promise<{ p: string; alive: boolean }[]> {
  const prefix = `${path.basename(dir)}.old-`;
  const found: { p: string; time: number; alive: boolean }[] = [];
  for (const n of await names(path.dirname(dir))) {
    if (!n.startsWith(prefix)) continue;
    const parts = n.slice(prefix.length).split('-');
    const time = Number(parts[0]);
    const p = path.join(path.dirname(dir), n);
    if (!Number.isFinite(time) || (await exists(p)) !== 'dir') continue;
    const owned = /^\d+$/.test(parts[1] ?? '') && /^[0-9a-f]{12}$/.test(parts[2] ?? '') && parts.length === 3;
    found.push({ p, time, alive: !owned || ownerAlive(Number(parts[1]), `${parts[1]}-${parts[2]}`) });
  }
  found.sort((a, b) => b.time - a.time || (a.p < b.p ? 1 : -1));
  return found.map(({ p, alive }) => ({ p, alive }));
}

/** Removes `dir.tmp-<pid>-<hex>` and `dir.old-<time>-<pid>-<hex>` siblings of processes that are gone. */
async function removeStaleSiblings(dir: string): Promise<void> {
  const base = path.basename(dir);
  const tmpRe = new RegExp(`^${escapeRe(base)}\\.tmp-(\\d+)-([0-9a-f]{12})$`);
  const oldRe = new RegExp(`^${escapeRe(base)}\\.old-\\d+-(\\d+)-([0-9a-f]{12})$`);
  for (const n of await names(path.dirname(dir))) {
    const m = tmpRe.exec(n) ?? oldRe.exec(n);
    if (!m || ownerAlive(Number(m[1]), `${m[1]}-${m[2]}`)) continue;
    await rm(path.join(path.dirname(dir), n), { recursive: true, force: true }).catch(() => undefined);
  }
}

function escapeRe(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

// ---- the journal -------------------------------------------------------------------------

interface Journal { renames: [string, string][]; remove: string[] }

function isPlainName(n: unknown): n is string {
  return typeof n === 'string' && n !== '' && n !== '.' && n !== '..' && !/[/\\\0]/.test(n);
}

async function readJournal(file: string): Promise<Journal> {
  let j: Journal;
  try {
    j = JSON.parse(await readFile(file, 'utf8')) as Journal;
  } catch (e) {
    throw new Error(`nodegrad: checkpoint: cannot read the journal ${file} of an interrupted save: ${(e as Error).message}`);
  }
  const ok = j && Array.isArray(j.renames) && Array.isArray(j.remove) &&
    j.renames.every((r) => Array.isArray(r) && r.length === 2 && isPlainName(r[0]) && isPlainName(r[1])) && j.remove.every(isPlainName);
  if (!ok) throw new Error(`nodegrad: checkpoint: the journal ${file} of an interrupted save is malformed (expected { renames: [[staged, name]], remove: [name] })`);
  return j;
}

/** Finishes a committed save: idempotent, so a crash in here is finished by the next run. */
async function applyJournal(dir: string, journalName: string, j: Journal): Promise<void> {
  for (const [from, to] of j.renames) {
    try {
      await rename(path.join(dir, from), path.join(dir, to));
    } catch (e) {
      if (errCode(e) !== 'ENOENT') throw e; // already renamed
    }
  }
  for (const n of j.remove) await rm(path.join(dir, n), { force: true });
  await fsyncDir(dir);
  await rm(path.join(dir, journalName), { force: true });
  await fsyncDir(dir);
}

/**
 * Brings a checkpoint directory to a committed state: waits for a live save, applies the
 * journal of a save whose process is gone, removes the temporaries of gone processes.
 */
async function recover(dir: string, waitMs: number): Promise<void> {
  const deadline = Date.now() + waitMs;
  for (;;) {
    const journals = (await names(dir)).map((n) => ({ n, m: JOURNAL.exec(n) })).filter((x) => x.m);
    if (journals.length === 0) break;
    const live = journals.filter(({ m }) => ownerAlive(Number(m![1]), `${m![1]}-${m![2]}`));
    const dead = journals.filter((x) => !live.includes(x));
    if (dead.length) {
      // normally at most one: each save recovers before it stages
      const withTime = await Promise.all(dead.map(async (x) => ({ ...x, t: (await lstat(path.join(dir, x.n)).catch(() => null))?.mtimeMs ?? 0 })));
      withTime.sort((a, b) => a.t - b.t || (a.n < b.n ? -1 : 1));
      for (const { n } of withTime) {
        const file = path.join(dir, n);
        if ((await exists(file)) === null) continue; // another reader finished it
        await applyJournal(dir, n, await readJournal(file));
      }
      continue;
    }
    if (Date.now() > deadline) {
      const pid = live[0].m![1];
      throw new Error(`nodegrad: checkpoint: a save by process ${pid} is still in progress in ${dir} after ${waitMs} ms (journal ${live[0].n})`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  for (const n of await names(dir)) {
    const m = TEMP.exec(n);
    if (!m || ownerAlive(Number(m[2]), `${m[2]}-${m[3]}`)) continue;
    const p = path.join(dir, n);
    const st = await lstat(p).catch(() => null);
    // cleanup is best effort: a read-only checkpoint still loads
    if (st?.isFile()) await rm(p, { force: true }).catch(() => undefined);
  }
}

/**
 * The directory to read a checkpoint from, made consistent first: a save interrupted after
 * its commit is finished, one in progress in another process is waited for, and temporaries
 * of processes that are gone are removed (so a load, like a save, cleans up after a killed
 * save). When `dir` is missing, the newest `dir.old-*` left by an earlier version's
 * interrupted swap is moved back (or, if its writer is alive, returned). Throws when there
 * is no checkpoint, unless `missingOk`.
 */
export async function resolveCheckpointDir(dir: string, opts: ResolveOptions = {}): Promise<string> {
  const kind = await exists(dir);
  if (kind === 'file') throw new Error(`nodegrad: resolveCheckpointDir: ${dir} is a file, not a checkpoint directory`);
  const target = path.resolve(dir);
  if (kind === null) {
    const olds = await oldCopies(target);
    if (olds.length === 0) {
      if (opts.missingOk) return dir;
      throw new Error(`nodegrad: resolveCheckpointDir: no checkpoint at ${dir} (and no ${path.basename(dir)}.old-* left by an interrupted write)`);
    }
    if (olds[0].alive) return olds[0].p;
    try {
      await rename(olds[0].p, target);
      await fsyncDir(path.dirname(target));
    } catch {
      return olds[0].p;
    }
  }
  await recover(target, opts.waitMs ?? 60_000);
  await removeStaleSiblings(target);
  return dir;
}

const RESERVED = (n: string): boolean => TEMP.test(n) || JOURNAL.test(n);

function checkFileName(name: string): void {
  if (!isPlainName(name)) {
    throw new Error(`nodegrad: writeDirAtomic: file name ${JSON.stringify(name)} must be a plain name (no path separators)`);
  }
  if (RESERVED(name)) {
    throw new Error(`nodegrad: writeDirAtomic: file name ${JSON.stringify(name)} looks like a temporary of an interrupted save (got a name ending in .tmp-<pid>-<hex>; expected any other name)`);
  }
}

/**
 * Atomically replaces the files `files` (name -> contents) inside the directory `dir`,
 * creating it if needed; every other file in it is kept (unless named by `opts.remove`).
 * Readers see all the old files or all the new ones (see the commit protocol above); on any
 * error before the commit the temporaries are removed and the old checkpoint is untouched.
 */
export async function writeDirAtomic(dir: string, files: Record<string, FileContents>, opts: WriteDirOptions = {}): Promise<void> {
  if (typeof dir !== 'string' || dir === '') throw new Error('nodegrad: writeDirAtomic: dir must be a non-empty string');
  if (files === null || typeof files !== 'object') throw new Error('nodegrad: writeDirAtomic: files must be an object of name -> contents');
  const entries = Object.entries(files);
  for (const [name] of entries) checkFileName(name);
  const target = path.resolve(dir);
  const parent = path.dirname(target);

  await mkdir(parent, { recursive: true });
  const kind = await exists(target);
  if (kind === 'file') throw new Error(`nodegrad: writeDirAtomic: ${dir} exists and is not a directory`);
  if (kind === null) {
    // An earlier version's swap was interrupted: put the last complete checkpoint back first.
    const olds = await oldCopies(target);
    if (olds.length > 0) await rename(olds[0].p, target);
    else await mkdir(target);
    await fsyncDir(parent);
  }
  await recover(target, 60_000);
  await removeStaleSiblings(target);
  for (const [name] of entries) {
    if ((await exists(path.join(target, name))) === 'dir') throw new Error(`nodegrad: writeDirAtomic: ${path.join(dir, name)} is a directory, so a file cannot replace it`);
  }

  const t = tag();
  inFlight.add(t);
  try {
    const journalName = `.nodegrad-commit-${t}`;
    const journal: Journal = { renames: [], remove: [] };
    try {
      for (const [name, data] of entries) {
        const staged = `${name}.tmp-${t}`;
        journal.renames.push([staged, name]);
        await writeSynced(path.join(target, staged), data);
      }
      const keep = new Set(entries.map(([n]) => n));
      const rm0 = opts.remove;
      const candidates = typeof rm0 === 'function' ? (await names(target)).filter((n) => !RESERVED(n) && rm0(n)) : [...(rm0 ?? [])];
      for (const n of candidates) if (!keep.has(n) && isPlainName(n) && !RESERVED(n)) journal.remove.push(n);
      await fsyncDir(target); // the staged names are durable before the journal names them
      await writeFileTagged(path.join(target, journalName), JSON.stringify(journal), t); // the commit
    } catch (e) {
      // Once the journal is in place the save is committed: the next load or save finishes it.
      if ((await exists(path.join(target, journalName)).catch(() => 'file')) === null) {
        for (const [staged] of journal.renames) await rm(path.join(target, staged), { force: true });
      }
      throw e;
    }
    await applyJournal(target, journalName, journal);
  } finally {
    inFlight.delete(t);
  }
}
