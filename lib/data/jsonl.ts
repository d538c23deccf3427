// Reading the line-oriented training files (examples.jsonl, chat.jsonl): the whole file as
// text and its JSON lines one record at a time, with errors that name the file and line.
import { readFile } from 'node:fs/promises';

/** The file as UTF-8 text; `who` names the command in the error ("finetune", "sft"). */
export async function readTextFile(who: string, file: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (e) {
    throw new Error(`nodegrad: ${who}: cannot read ${file} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
}

/** Calls fn with each non-blank line's parsed JSON and its 1-based line number. */
export function forEachJsonLine(who: string, file: string, raw: string, fn: (rec: unknown, line: number) => void): void {
  raw.split('\n').forEach((line, i) => {
    if (!line.trim()) return;
    let rec: unknown;
    try {
      rec = JSON.parse(line);
    } catch (e) {
      throw new Error(`nodegrad: ${who}: ${file} line ${i + 1}: invalid JSON (${(e as Error).message})`);
    }
    fn(rec, i + 1);
  });
}
