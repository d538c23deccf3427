// Crash-safe file and directory writes for checkpoints.
//
// A file is written to a sibling temp file, fsynced, renamed over the target and the
// directory fsynced: a reader sees the old bytes or the new bytes, never a mix, and a
// crash at any point leaves the previous file intact (plus, at worst, a stray temp file).
//
// A checkpoint directory is written to a sibling temp directory and swapped in with two
// renames: `dir` -> `dir.old-<time>-...`, then `dir.tmp-...` -> `dir`; the old one is then
// removed. Recovery rule: if `dir` is missing but a `dir.old-*` exists, a crash happened
// between the two renames and the newest `dir.old-*` is the last complete checkpoint.
// resolveCheckpointDir() applies that rule for readers; writeDirAtomic() applies it before
// writing (renaming the old directory back), so at most one `dir.old-*` exists at a time.
// One writer per target at a time: concurrent writers to the same path are not coordinated.
import { randomBytes } from 'node:crypto';
import { constants as fsc } from 'node:fs';
import { mkdir, open, readdir, rename, rm, stat, type FileHandle } from 'node:fs/promises';
import path from 'node:path';

/** Writes a file's contents through an open handle (e.g. streaming tensors one by one). */
export type WriteFn = (fh: FileHandle) => Promise<void>;
export type FileContents = Buffer | Uint8Array | string | WriteFn;

function tag(): string {
  return `${process.pid}-${randomBytes(6).toString('hex')}`;
}

async function fsyncDir(dir: string): Promise<void> {
  let fh: FileHandle | undefined;
  try {
    fh = await open(dir, fsc.O_RDONLY);
    await fh.sync();
  } catch (e) {
    // Some platforms (Windows) and file systems cannot open or fsync a directory.
    const code = (e as NodeJS.ErrnoException).code;
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

/**
 * Atomically replaces `file` with `data` (bytes, a string written as UTF-8, or an async
 * function that writes through the file handle). On any error the temp file is removed
 * and the previous `file` is left untouched.
 */
export async function writeFileAtomic(file: string, data: FileContents): Promise<void> {
  if (typeof file !== 'string' || file === '') throw new Error('nodegrad: writeFileAtomic: path must be a non-empty string');
  const tmp = `${file}.tmp-${tag()}`;
  try {
    await writeSynced(tmp, data);
    await rename(tmp, file);
  } catch (e) {
    await rm(tmp, { force: true });
    throw e;
  }
  await fsyncDir(path.dirname(path.resolve(file)));
}

async function exists(p: string): Promise<'dir' | 'file' | null> {
  try {
    return (await stat(p)).isDirectory() ? 'dir' : 'file';
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw e;
  }
}

/** The `dir.old-*` siblings of `dir`, newest first. */
async function oldCopies(dir: string): Promise<string[]> {
  const parent = path.dirname(dir);
  const prefix = `${path.basename(dir)}.old-`;
  let names: string[];
  try {
    names = await readdir(parent);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw e;
  }
  const found: { p: string; time: number }[] = [];
  for (const n of names) {
    if (!n.startsWith(prefix)) continue;
    const time = Number(n.slice(prefix.length).split('-')[0]);
    const p = path.join(parent, n);
    if (Number.isFinite(time) && (await exists(p)) === 'dir') found.push({ p, time });
  }
  found.sort((a, b) => b.time - a.time || (a.p < b.p ? 1 : -1));
  return found.map((f) => f.p);
}

/**
 * The directory to read a checkpoint from: `dir` itself when it exists, otherwise the
 * newest `dir.old-*` left by a crash in the middle of writeDirAtomic's swap. Throws when
 * neither exists. Never modifies anything.
 */
export async function resolveCheckpointDir(dir: string): Promise<string> {
  const kind = await exists(dir);
  if (kind === 'dir') return dir;
  if (kind === 'file') throw new Error(`nodegrad: resolveCheckpointDir: ${dir} is a file, not a checkpoint directory`);
  const olds = await oldCopies(path.resolve(dir));
  if (olds.length > 0) return olds[0];
  throw new Error(`nodegrad: resolveCheckpointDir: no checkpoint at ${dir} (and no ${path.basename(dir)}.old-* left by an interrupted write)`);
}

function checkFileName(name: string): void {
  if (name === '' || name === '.' || name === '..' || /[/\\\0]/.test(name)) {
    throw new Error(`nodegrad: writeDirAtomic: file name ${JSON.stringify(name)} must be a plain name (no path separators)`);
  }
}

/**
 * Atomically replaces the directory `dir` with one holding exactly `files` (name ->
 * contents). Readers see the old or the new checkpoint, never a half-written one; on any
 * error before the swap the temp directory is removed and the old checkpoint untouched.
 */
export async function writeDirAtomic(dir: string, files: Record<string, FileContents>): Promise<void> {
  if (typeof dir !== 'string' || dir === '') throw new Error('nodegrad: writeDirAtomic: dir must be a non-empty string');
  if (files === null || typeof files !== 'object') throw new Error('nodegrad: writeDirAtomic: files must be an object of name -> contents');
  const target = path.resolve(dir);
  const parent = path.dirname(target);
  for (const name of Object.keys(files)) checkFileName(name);

  await mkdir(parent, { recursive: true });
  let kind = await exists(target);
  if (kind === 'file') throw new Error(`nodegrad: writeDirAtomic: ${dir} exists and is not a directory`);
  if (kind === null) {
    // A previous swap was interrupted: put the last complete checkpoint back first.
    const olds = await oldCopies(target);
    if (olds.length > 0) {
      await rename(olds[0], target);
      kind = 'dir';
    }
  }

  const tmp = `${target}.tmp-${tag()}`;
  try {
    await mkdir(tmp);
    for (const [name, data] of Object.entries(files)) await writeSynced(path.join(tmp, name), data);
    await fsyncDir(tmp);
  } catch (e) {
    await rm(tmp, { recursive: true, force: true });
    throw e;
  }

  if (kind === null) {
    try {
      await rename(tmp, target);
    } catch (e) {
      await rm(tmp, { recursive: true, force: true });
      throw e;
    }
    await fsyncDir(parent);
    return;
  }
  const old = `${target}.old-${Date.now()}-${tag()}`;
  try {
    await rename(target, old);
  } catch (e) {
    await rm(tmp, { recursive: true, force: true });
    throw e;
  }
  try {
    await rename(tmp, target);
  } catch (e) {
    await rename(old, target).catch(() => undefined);
    await rm(tmp, { recursive: true, force: true });
    throw e;
  }
  await fsyncDir(parent);
  await rm(old, { recursive: true, force: true });
}
