// Request-body validation for `nodegrad serve`: each endpoint's JSON schema written as
// plain checks, so a 400 names the field that is wrong and why, and unknown fields
// (a typo such as max_tokens) are refused instead of silently ignored.

/** An error that becomes an HTTP response: status, a message, and the field at fault. */
export class HttpError extends Error {
  constructor(readonly status: number, message: string, readonly field?: string, readonly headers: Record<string, string> = {}) {
    super(message);
  }
}

const fail = (field: string, why: string): never => {
  throw new HttpError(400, `${field}: ${why}`, field);
};

export interface GenerateRequest {
  prompt: string;
  maxNewTokens?: number;
  temperature: number;
  topK?: number;
  topP?: number;
  seed?: number;
  stream: boolean;
}

export interface ClassifyRequest { texts: string[] }

const GENERATE_FIELDS = ['prompt', 'maxNewTokens', 'temperature', 'topK', 'topP', 'seed', 'stream'];
const CLASSIFY_FIELDS = ['texts'];

function typeName(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'number' && !Number.isFinite(v)) return String(v);
  return typeof v === 'object' ? 'an object' : `${typeof v} ${JSON.stringify(v)}`.slice(0, 60);
}

function checkObject(body: unknown, allowed: string[]): Record<string, unknown> {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) {
    throw new HttpError(400, `body: must be a JSON object (got ${typeName(body)})`, 'body');
  }
  for (const k of Object.keys(body)) {
    if (!allowed.includes(k)) fail(k, `unknown field (allowed: ${allowed.join(', ')})`);
  }
  return body as Record<string, unknown>;
}

function optNumber(o: Record<string, unknown>, field: string, check: (x: number) => boolean, rule: string): number | undefined {
  const v = o[field];
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isFinite(v)) return fail(field, `must be a number ${rule} (got ${typeName(v)})`);
  if (!check(v)) return fail(field, `must be ${rule} (got ${v})`);
  return v;
}

/** Validates the body of POST /v1/generate; `maxPromptChars` bounds the prompt's length. */
export function parseGenerateRequest(body: unknown, maxPromptChars = 1 << 20): GenerateRequest {
  const o = checkObject(body, GENERATE_FIELDS);
  const prompt = o.prompt;
  if (prompt === undefined) fail('prompt', 'is required (a non-empty string)');
  if (typeof prompt !== 'string') fail('prompt', `must be a string (got ${typeName(prompt)})`);
  const p = prompt as string;
  if (p.length === 0) fail('prompt', 'must not be empty (the model needs at least one token to continue)');
  if (p.length > maxPromptChars) fail('prompt', `is ${p.length} characters long; the limit is ${maxPromptChars}`);
  const maxNewTokens = optNumber(o, 'maxNewTokens', (x) => Number.isInteger(x) && x >= 0, 'an integer >= 0');
  const temperature = optNumber(o, 'temperature', (x) => x >= 0 && x <= 100, 'in [0, 100] (0 = greedy)') ?? 1;
  const topK = optNumber(o, 'topK', (x) => Number.isInteger(x) && x >= 0, 'an integer >= 0 (0 = no limit)');
  const topP = optNumber(o, 'topP', (x) => x > 0 && x <= 1, 'in (0, 1]');
  const seed = optNumber(o, 'seed', (x) => Number.isInteger(x) && x >= 0 && x <= 0xffffffff, 'an integer in [0, 2^32 - 1]');
  const stream = o.stream;
  if (stream !== undefined && typeof stream !== 'boolean') fail('stream', `must be a boolean (got ${typeName(stream)})`);
  return { prompt: p, maxNewTokens, temperature, topK, topP, seed, stream: stream === true };
}

/** Validates the body of POST /v1/classify. */
export function parseClassifyRequest(body: unknown, maxTexts = 256, maxChars = 1 << 20): ClassifyRequest {
  const o = checkObject(body, CLASSIFY_FIELDS);
  const texts = o.texts;
  if (texts === undefined) fail('texts', 'is required (an array of strings)');
  if (!Array.isArray(texts)) fail('texts', `must be an array of strings (got ${typeName(texts)})`);
  const t = texts as unknown[];
  if (t.length === 0) fail('texts', 'must hold at least one string');
  if (t.length > maxTexts) fail('texts', `holds ${t.length} strings; the limit is ${maxTexts} per request`);
  t.forEach((s, i) => {
    if (typeof s !== 'string') fail(`texts[${i}]`, `must be a string (got ${typeName(s)})`);
    if ((s as string).length > maxChars) fail(`texts[${i}]`, `is ${(s as string).length} characters long; the limit is ${maxChars}`);
  });
  return { texts: t as string[] };
}

/** '1mb', '512kb', '100b', '2048' → bytes (1kb = 1024 bytes). */
export function parseByteSize(s: string | number): number {
  if (typeof s === 'number') {
    if (Number.isInteger(s) && s > 0) return s;
    throw new Error(`nodegrad serve: a size must be a positive integer number of bytes (got ${s})`);
  }
  const m = /^\s*(\d+(?:\.\d+)?)\s*(b|kb|k|mb|m|gb|g)?\s*$/i.exec(s);
  if (!m) throw new Error(`nodegrad serve: cannot read the size '${s}' (examples: 1mb, 512kb, 4096)`);
  const unit = (m[2] ?? 'b').toLowerCase()[0];
  const mult = unit === 'k' ? 1024 : unit === 'm' ? 1024 ** 2 : unit === 'g' ? 1024 ** 3 : 1;
  const n = Math.floor(Number(m[1]) * mult);
  if (n <= 0) throw new Error(`nodegrad serve: a size must be positive (got '${s}')`);
  return n;
}
