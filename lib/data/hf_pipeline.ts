// The text side of a Hugging Face tokenizer.json: normalizers (string -> string) and
// pre-tokenizers (a piece -> smaller pieces), built from their JSON descriptions with the
// semantics of the Rust `tokenizers` crate. Pre-tokenizers push pieces to a callback rather
// than returning arrays, so a Sequence of them allocates nothing per piece on the hot path.
import { onigRegExp, literalRegExp } from './hf_regex.js';
import { BYTE_TO_CHAR } from './bpe.js';

type Json = Record<string, unknown>;
export type Normalizer = (s: string) => string;
/** `first`: the piece starts at offset 0 of the encoded text (Metaspace's prepend_scheme "first"). */
export type Emit = (piece: string, first: boolean) => void;
export type PreTokenizer = (s: string, first: boolean, emit: Emit) => void;

const WHO = 'tokenizer.json';

function bad(where: string, what: string, got: unknown): never {
  throw new Error(`nodegrad: ${WHO}: ${where}: ${what} (got ${JSON.stringify(got)?.slice(0, 200)})`);
}

/** A `pattern` field: { "String": "..." } or { "Regex": "..." }, as a global RegExp. */
export function patternRegExp(where: string, p: unknown): RegExp {
  const o = p as { String?: unknown; Regex?: unknown } | null;
  if (o && typeof o.String === 'string') return literalRegExp(o.String);
  if (o && typeof o.Regex === 'string') return onigRegExp(o.Regex, `${WHO}: ${where}`);
  return bad(where, 'pattern must be {"String": ...} or {"Regex": ...}', p);
}

const isWhite = (c: number): boolean => c === 0x20 || (c >= 9 && c <= 13) || c === 0x85 || c === 0xa0 || c === 0x1680
  || (c >= 0x2000 && c <= 0x200a) || c === 0x2028 || c === 0x2029 || c === 0x202f || c === 0x205f || c === 0x3000;

export function stripWhite(s: string, left: boolean, right: boolean): string {
  let a = 0, b = s.length;
  if (left) while (a < b && isWhite(s.charCodeAt(a))) a++;
  if (right) while (b > a && isWhite(s.charCodeAt(b - 1))) b--;
  return a === 0 && b === s.length ? s : s.slice(a, b);
}

// ---- normalizers ----------------------------------------------------------------------

const CJK = /[\u{4E00}-\u{9FFF}\u{3400}-\u{4DBF}\u{20000}-\u{2A6DF}\u{2A700}-\u{2B73F}\u{2B740}-\u{2B81F}\u{2B820}-\u{2CEAF}\u{F900}-\u{FAFF}\u{2F800}-\u{2FA1F}]/gu;

export function buildNormalizer(j: unknown, where = 'normalizer'): Normalizer | null {
  if (j === null || j === undefined) return null;
  const o = j as Json;
  switch (o.type) {
    case 'Sequence': {
      if (!Array.isArray(o.normalizers)) bad(where, 'a Sequence needs a "normalizers" list', o);
      const steps = (o.normalizers as unknown[]).map((n, i) => buildNormalizer(n, `${where}.normalizers[${i}]`)).filter((n): n is Normalizer => n !== null);
      return (s) => { for (const f of steps) s = f(s); return s; };
    }
    case 'NFC': case 'NFD': case 'NFKC': case 'NFKD': {
      const form = o.type;
      return (s) => s.normalize(form);
    }
    case 'Lowercase':
      // Per character, as the Rust crate does: a final capital sigma becomes σ, not ς.
      return (s) => { let out = ''; for (const ch of s) out += ch.toLowerCase(); return out; };
    case 'Strip': {
      const left = o.strip_left !== false, right = o.strip_right !== false;
      return (s) => stripWhite(s, left, right);
    }
    case 'StripAccents':
      return (s) => s.replace(/\p{Mn}/gu, '');
    case 'Replace': {
      const re = patternRegExp(`${where}.pattern`, o.pattern);
      if (typeof o.content !== 'string') bad(where, 'Replace needs a string "content"', o.content);
      const content = o.content;
      return (s) => s.replace(re, () => content);
    }
    case 'Prepend': {
      if (typeof o.prepend !== 'string') bad(where, 'Prepend needs a string "prepend"', o.prepend);
      const pre = o.prepend;
      return (s) => (s.length ? pre + s : s);
    }
    case 'Append': {
      if (typeof o.append !== 'string') bad(where, 'Append needs a string "append"', o.append);
      const post = o.append;
      return (s) => (s.length ? s + post : s);
    }
    case 'BertNormalizer': {
      const clean = o.clean_text !== false, chinese = o.handle_chinese_chars !== false, lower = o.lowercase !== false;
      const strip = o.strip_accents === null || o.strip_accents === undefined ? lower : o.strip_accents === true;
      return (s) => {
        if (clean) s = s.replace(/[\0\uFFFD\p{Cc}\p{Cf}]/gu, (c) => (c === '\t' || c === '\n' || c === '\r' ? ' ' : '')).replace(/\p{White_Space}/gu, ' ');
        if (chinese) s = s.replace(CJK, (c) => ` ${c} `);
        if (strip) s = s.normalize('NFD').replace(/\p{Mn}/gu, '');
        if (lower) { let out = ''; for (const ch of s) out += ch.toLowerCase(); s = out; }
        return s;
      };
    }
    default:
      return bad(where, 'unsupported normalizer type (supported: Sequence, NFC, NFD, NFKC, NFKD, Lowercase, Strip, StripAccents, Replace, Prepend, Append, BertNormalizer)', o.type);
  }
}

// ---- splitting with the crate's delimiter behaviours ----------------------------------

export type SplitBehavior = 'Removed' | 'Isolated' | 'MergedWithPrevious' | 'MergedWithNext' | 'Contiguous';
const BEHAVIORS = new Set<string>(['Removed', 'Isolated', 'MergedWithPrevious', 'MergedWithNext', 'Contiguous']);

/**
 * Cuts `s` into alternating runs (matched / not matched by `re`, or flipped by `invert`),
 * combines them per `behavior`, and emits the non-empty pieces.
 */
export function splitBy(s: string, first: boolean, emit: Emit, re: RegExp, behavior: SplitBehavior, invert: boolean): void {
  if (s.length === 0) return;
  // Segment boundaries: starts[k], ends[k], isMatch[k].
  const segStart: number[] = [], segEnd: number[] = [], segMatch: boolean[] = [];
  let prev = 0;
  re.lastIndex = 0;
  for (let m = re.exec(s); m !== null; m = re.exec(s)) {
    const a = m.index, b = a + m[0].length;
    if (b === a) {   // empty match: step one code point, as the crate's find_iter does
      const c = s.charCodeAt(a);
      re.lastIndex = a + (c >= 0xd800 && c <= 0xdbff && a + 1 < s.length ? 2 : 1);
      if (a >= s.length) break;
      continue;
    }
    if (a > prev) { segStart.push(prev); segEnd.push(a); segMatch.push(invert); }
    segStart.push(a); segEnd.push(b); segMatch.push(!invert);
    prev = b;
  }
  if (prev < s.length) { segStart.push(prev); segEnd.push(s.length); segMatch.push(invert); }
  const n = segStart.length;
  const out = (a: number, b: number): void => { if (b > a) emit(a === 0 && b === s.length ? s : s.slice(a, b), first && a === 0); };
  switch (behavior) {
    case 'Removed':
      for (let k = 0; k < n; k++) if (!segMatch[k]) out(segStart[k], segEnd[k]);
      return;
    case 'Isolated':
      for (let k = 0; k < n; k++) out(segStart[k], segEnd[k]);
      return;
    case 'MergedWithPrevious': {
      let a = -1, b = -1, prevMatch = false;
      for (let k = 0; k < n; k++) {
        if (segMatch[k] && !prevMatch && a >= 0) b = segEnd[k];
        else { if (a >= 0) out(a, b); a = segStart[k]; b = segEnd[k]; }
        prevMatch = segMatch[k];
      }
      if (a >= 0) out(a, b);
      return;
    }
    case 'MergedWithNext': {
      const pieces: [number, number][] = [];
      let prevMatch = false;
      for (let k = n - 1; k >= 0; k--) {
        const last = pieces[pieces.length - 1];
        if (segMatch[k] && !prevMatch && last) last[0] = segStart[k];
        else pieces.push([segStart[k], segEnd[k]]);
        prevMatch = segMatch[k];
      }
      for (let k = pieces.length - 1; k >= 0; k--) out(pieces[k][0], pieces[k][1]);
      return;
    }
    case 'Contiguous': {
      let a = -1, b = -1, prevMatch = false;
      for (let k = 0; k < n; k++) {
        if (segMatch[k] === prevMatch && a >= 0) b = segEnd[k];
        else { if (a >= 0) out(a, b); a = segStart[k]; b = segEnd[k]; }
        prevMatch = segMatch[k];
      }
      if (a >= 0) out(a, b);
      return;
    }
  }
}

// ---- pre-tokenizers -------------------------------------------------------------------

/** GPT-2's pattern as the ByteLevel pre-tokenizer runs it (\s is Unicode White_Space there). */
export const GPT2_SPLIT = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

/** The UTF-8 bytes of s as GPT-2's byte-level characters, without allocating a Buffer. */
export function byteLevel(s: string): string {
  let out = '';
  for (let i = 0; i < s.length; i++) {
    let c = s.charCodeAt(i);
    if (c < 0x80) { out += BYTE_TO_CHAR[c]; continue; }
    if (c < 0x800) { out += BYTE_TO_CHAR[0xc0 | (c >> 6)] + BYTE_TO_CHAR[0x80 | (c & 63)]; continue; }
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) {
        c = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00);
        i++;
        out += BYTE_TO_CHAR[0xf0 | (c >> 18)] + BYTE_TO_CHAR[0x80 | ((c >> 12) & 63)] + BYTE_TO_CHAR[0x80 | ((c >> 6) & 63)] + BYTE_TO_CHAR[0x80 | (c & 63)];
        continue;
      }
    }
    if (c >= 0xd800 && c <= 0xdfff) c = 0xfffd;   // a lone surrogate is not UTF-8: U+FFFD, as Buffer.from does
    out += BYTE_TO_CHAR[0xe0 | (c >> 12)] + BYTE_TO_CHAR[0x80 | ((c >> 6) & 63)] + BYTE_TO_CHAR[0x80 | (c & 63)];
  }
  return out;
}

const PUNCT = /[\p{P}!-\/:-@[-`{-~]/gu;
const NUMERIC = /\p{N}/gu;

function behaviorOf(where: string, v: unknown, dflt: SplitBehavior): SplitBehavior {
  if (v === undefined || v === null) return dflt;
  if (typeof v !== 'string' || !BEHAVIORS.has(v)) bad(where, 'behavior must be one of Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous', v);
  return v as SplitBehavior;
}

export function buildPreTokenizer(j: unknown, where = 'pre_tokenizer'): PreTokenizer | null {
  if (j === null || j === undefined) return null;
  const o = j as Json;
  switch (o.type) {
    case 'Sequence': {
      if (!Array.isArray(o.pretokenizers)) bad(where, 'a Sequence needs a "pretokenizers" list', o);
      const steps = (o.pretokenizers as unknown[]).map((p, i) => buildPreTokenizer(p, `${where}.pretokenizers[${i}]`)).filter((p): p is PreTokenizer => p !== null);
      if (steps.length === 0) return null;
      let chain = steps[steps.length - 1];
      for (let k = steps.length - 2; k >= 0; k--) {
        const step = steps[k], next = chain;
        chain = (s, first, emit) => step(s, first, (p, f) => next(p, f, emit));
      }
      return chain;
    }
    case 'Split': {
      const re = patternRegExp(`${where}.pattern`, o.pattern);
      const behavior = behaviorOf(where, o.behavior, 'Isolated');
      const invert = o.invert === true;
      return (s, first, emit) => splitBy(s, first, emit, re, behavior, invert);
    }
    case 'ByteLevel': {
      const prefix = o.add_prefix_space === true;
      const re = o.use_regex === false ? null : onigRegExp(GPT2_SPLIT);
      return (s, first, emit) => {
        if (prefix && s[0] !== ' ') s = ' ' + s;
        if (re === null) { if (s.length) emit(byteLevel(s), first); return; }
        splitBy(s, first, (p, f) => emit(byteLevel(p), f), re, 'Isolated', false);
      };
    }
    case 'Metaspace': {
      const rep = typeof o.replacement === 'string' ? o.replacement : '\u2581';
      const scheme = typeof o.prepend_scheme === 'string' ? o.prepend_scheme : o.add_prefix_space === false ? 'never' : 'always';
      if (!['always', 'first', 'never'].includes(scheme)) bad(where, 'prepend_scheme must be "always", "first" or "never"', o.prepend_scheme);
      const split = o.split !== false;
      const re = literalRegExp(rep);
      return (s, first, emit) => {
        if (s.length === 0) return;
        s = s.replaceAll(' ', rep);
        if ((scheme === 'always' || (scheme === 'first' && first)) && !s.startsWith(rep)) s = rep + s;
        if (split) splitBy(s, first, emit, re, 'MergedWithNext', false);
        else emit(s, first);
      };
    }
    case 'Digits': {
      const behavior: SplitBehavior = o.individual_digits === true ? 'Isolated' : 'Contiguous';
      return (s, first, emit) => splitBy(s, first, emit, NUMERIC, behavior, false);
    }
    case 'Whitespace': {
      const re = onigRegExp('\\w+|[^\\w\\s]+');
      return (s, first, emit) => splitBy(s, first, emit, re, 'Removed', true);
    }
    case 'WhitespaceSplit': {
      const re = /\p{White_Space}/gu;
      return (s, first, emit) => splitBy(s, first, emit, re, 'Removed', false);
    }
    case 'Punctuation': {
      const behavior = behaviorOf(where, o.behavior, 'Isolated');
      return (s, first, emit) => splitBy(s, first, emit, PUNCT, behavior, false);
    }
    case 'BertPreTokenizer': {
      const ws = /\p{White_Space}/gu;
      return (s, first, emit) => splitBy(s, first, (p, f) => splitBy(p, f, emit, PUNCT, 'Isolated', false), ws, 'Removed', false);
    }
    case 'CharDelimiterSplit': {
      if (typeof o.delimiter !== 'string' || [...o.delimiter].length !== 1) bad(where, 'CharDelimiterSplit needs a one-character "delimiter"', o.delimiter);
      const re = literalRegExp(o.delimiter);
      return (s, first, emit) => splitBy(s, first, emit, re, 'Removed', false);
    }
    default:
      return bad(where, 'unsupported pre-tokenizer type (supported: Sequence, Split, ByteLevel, Metaspace, Digits, Whitespace, WhitespaceSplit, Punctuation, BertPreTokenizer, CharDelimiterSplit)', o.type);
  }
}
