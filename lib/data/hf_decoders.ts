// The id side of a Hugging Face tokenizer.json: post-processors (special tokens around the
// encoded ids: BOS/EOS, [CLS]/[SEP]) and decoders (tokens -> text), with the semantics of
// the Rust `tokenizers` crate.
import { CHAR_TO_BYTE } from './bpe.js';
import { patternRegExp } from './hf_pipeline.js';

type Json = Record<string, unknown>;
/** Ids of one sequence (and an optional pair) -> the model's input ids. */
export type PostProcessor = (a: number[], b: number[] | null) => number[];
export type Decoder = (tokens: string[]) => string[];

const WHO = 'tokenizer.json';
function bad(where: string, what: string, got: unknown): never {
  throw new Error(`nodegrad: ${WHO}: ${where}: ${what} (got ${JSON.stringify(got)?.slice(0, 200)})`);
}

// ---- post-processors ------------------------------------------------------------------

function tokenPair(where: string, v: unknown): number {
  if (!Array.isArray(v) || v.length !== 2 || typeof v[0] !== 'string' || !Number.isInteger(v[1])) bad(where, 'expected a ["token", id] pair', v);
  return v[1] as number;
}

/** null for processors that leave ids alone (ByteLevel only trims offsets). */
export function buildPostProcessor(j: unknown, where = 'post_processor'): PostProcessor | null {
  if (j === null || j === undefined) return null;
  const o = j as Json;
  switch (o.type) {
    case 'ByteLevel':
      return null;
    case 'Sequence': {
      if (!Array.isArray(o.processors)) bad(where, 'a Sequence needs a "processors" list', o);
      const steps = (o.processors as unknown[]).map((p, i) => buildPostProcessor(p, `${where}.processors[${i}]`)).filter((p): p is PostProcessor => p !== null);
      if (steps.length === 0) return null;
      if (steps.length > 1) bad(where, 'a Sequence may hold one processor that adds tokens (and any number of ByteLevel ones)', o.processors);
      return steps[0];
    }
    case 'TemplateProcessing': {
      const special = new Map<string, number[]>();
      const st = (o.special_tokens ?? {}) as Record<string, { ids?: unknown }>;
      for (const [name, t] of Object.entries(st)) {
        if (!t || !Array.isArray(t.ids) || !t.ids.every((x) => Number.isInteger(x))) bad(`${where}.special_tokens.${name}`, 'needs integer "ids"', t);
        special.set(name, t.ids as number[]);
      }
      const compile = (tpl: unknown, key: string): ((a: number[], b: number[] | null) => number[]) => {
        if (!Array.isArray(tpl)) bad(`${where}.${key}`, 'a template must be a list of {SpecialToken} / {Sequence} pieces', tpl);
        const parts = (tpl as Json[]).map((p, i): ((a: number[], b: number[] | null, out: number[]) => void) => {
          const sp = p?.SpecialToken as { id?: unknown } | undefined;
          const seq = p?.Sequence as { id?: unknown } | undefined;
          if (sp && typeof sp.id === 'string') {
            const ids = special.get(sp.id);
            if (!ids) bad(`${where}.${key}[${i}]`, `special token ${JSON.stringify(sp.id)} is not in special_tokens`, p);
            return (_a, _b, out) => { for (const id of ids) out.push(id); };
          }
          if (seq && (seq.id === 'A' || seq.id === 'B')) {
            const which = seq.id;
            return (a, b, out) => { for (const id of which === 'A' ? a : b ?? []) out.push(id); };
          }
          return bad(`${where}.${key}[${i}]`, 'expected {"SpecialToken": {"id"}} or {"Sequence": {"id": "A"|"B"}}', p);
        });
        return (a, b) => { const out: number[] = []; for (const f of parts) f(a, b, out); return out; };
      };
      const single = compile(o.single, 'single');
      const pair = o.pair === undefined || o.pair === null ? null : compile(o.pair, 'pair');
      return (a, b) => (b === null ? single(a, null) : pair ? pair(a, b) : bad(where, 'this template has no "pair" form', null));
    }
    case 'RobertaProcessing': case 'BertProcessing': {
      const cls = tokenPair(`${where}.cls`, o.cls), sep = tokenPair(`${where}.sep`, o.sep);
      const roberta = o.type === 'RobertaProcessing';
      return (a, b) => (b === null ? [cls, ...a, sep] : roberta ? [cls, ...a, sep, sep, ...b, sep] : [cls, ...a, sep, ...b, sep]);
    }
    default:
      return bad(where, 'unsupported post-processor type (supported: TemplateProcessing, ByteLevel, RobertaProcessing, BertProcessing, Sequence)', o.type);
  }
}

// ---- decoders -------------------------------------------------------------------------

const utf8 = new TextDecoder('utf-8', { fatal: false, ignoreBOM: true });
const utf8Strict = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** GPT-2 byte-level tokens -> text; a token holding a character outside the byte alphabet stands for its own UTF-8. */
export function byteLevelDecode(tokens: readonly string[]): string {
  let len = 0;
  for (const t of tokens) len += t.length * 3;
  const bytes = new Uint8Array(len);
  let n = 0;
  for (const t of tokens) {
    const start = n;
    let ok = true;
    for (let j = 0; j < t.length; j++) {
      const c = t.charCodeAt(j);
      const b = c < CHAR_TO_BYTE.length ? CHAR_TO_BYTE[c] : -1;
      if (b < 0) { ok = false; break; }
      bytes[n++] = b;
    }
    if (!ok) n = start + Buffer.from(bytes.buffer, bytes.byteOffset).write(t, start, 'utf8');
  }
  return utf8.decode(bytes.subarray(0, n));
}

const BYTE_TOKEN = /^<0x([0-9A-Fa-f]{2})>$/;

export function buildDecoder(j: unknown, where = 'decoder'): Decoder | null {
  if (j === null || j === undefined) return null;
  const o = j as Json;
  switch (o.type) {
    case 'Sequence': {
      if (!Array.isArray(o.decoders)) bad(where, 'a Sequence needs a "decoders" list', o);
      const steps = (o.decoders as unknown[]).map((d, i) => buildDecoder(d, `${where}.decoders[${i}]`)).filter((d): d is Decoder => d !== null);
      return (tokens) => { for (const f of steps) tokens = f(tokens); return tokens; };
    }
    case 'ByteLevel':
      return (tokens) => [byteLevelDecode(tokens)];
    case 'Metaspace': {
      const rep = typeof o.replacement === 'string' ? o.replacement : '\u2581';
      const scheme = typeof o.prepend_scheme === 'string' ? o.prepend_scheme : o.add_prefix_space === false ? 'never' : 'always';
      // The crate drops every replacement character of the first token when it prepends one.
      return (tokens) => tokens.map((t, i) => t.replaceAll(rep, i === 0 && scheme !== 'never' ? '' : ' '));
    }
    case 'ByteFallback':
      return (tokens) => {
        const out: string[] = [];
        let run: number[] = [];
        const flush = (): void => {
          if (run.length === 0) return;
          try { out.push(utf8Strict.decode(new Uint8Array(run))); } catch { for (let k = 0; k < run.length; k++) out.push('\uFFFD'); }
          run = [];
        };
        for (const t of tokens) {
          const m = t.length === 6 ? BYTE_TOKEN.exec(t) : null;
          if (m) { run.push(parseInt(m[1], 16)); continue; }
          flush();
          out.push(t);
        }
        flush();
        return out;
      };
    case 'Fuse':
      return (tokens) => [tokens.join('')];
    case 'Strip': {
      const content = typeof o.content === 'string' ? o.content : ' ';
      const start = Number.isInteger(o.start) ? (o.start as number) : 0, stop = Number.isInteger(o.stop) ? (o.stop as number) : 0;
      const w = content.length;   // one character: one or two code units
      return (tokens) => tokens.map((t) => {
        let a = 0, b = t.length;
        for (let k = 0; k < start && a + w <= b && t.startsWith(content, a); k++) a += w;
        for (let k = 0; k < stop && b - w >= a && t.endsWith(content, b); k++) b -= w;
        return a === 0 && b === t.length ? t : t.slice(a, b);
      });
    }
    case 'Replace': {
      if (typeof o.content !== 'string') bad(where, 'Replace needs a string "content"', o.content);
      const content = o.content;
      const lit = (o.pattern as { String?: unknown } | null)?.String;
      if (typeof lit === 'string' && lit !== '') return (tokens) => tokens.map((t) => (t.includes(lit) ? t.replaceAll(lit, content) : t));
      const re = patternRegExp(`${where}.pattern`, o.pattern);
      return (tokens) => tokens.map((t) => t.replace(re, () => content));
    }
    case 'BPEDecoder': {
      const suffix = typeof o.suffix === 'string' ? o.suffix : '</w>';
      return (tokens) => tokens.map((t, i) => t.replaceAll(suffix, i === tokens.length - 1 ? '' : ' '));
    }
    case 'WordPiece': {
      const prefix = typeof o.prefix === 'string' ? o.prefix : '##';
      return (tokens) => tokens.map((t, i) => (i === 0 ? t : t.startsWith(prefix) ? t.slice(prefix.length) : ' ' + t));
    }
    default:
      return bad(where, 'unsupported decoder type (supported: ByteLevel, Metaspace, ByteFallback, Fuse, Strip, Replace, BPEDecoder, WordPiece, Sequence)', o.type);
  }
}

/** transformers' clean_up_tokenization: drops the space English tokenizers put before punctuation and contractions. */
export function cleanUpTokenization(s: string): string {
  return s.replaceAll(' .', '.').replaceAll(' ?', '?').replaceAll(' !', '!').replaceAll(' ,', ',').replaceAll(" ' ", "'")
    .replaceAll(" n't", "n't").replaceAll(" 'm", "'m").replaceAll(" 's", "'s").replaceAll(" 've", "'ve").replaceAll(" 're", "'re");
}
