// Oniguruma (Ruby syntax) patterns, as Hugging Face tokenizer.json files write them for the
// Rust `tokenizers` crate, translated to JavaScript RegExp source for the `u` flag.
//
// What differs and how it is bridged:
//  - \s \d \w are Unicode-aware in Oniguruma (White_Space, Nd, L|M|N|Pc) and ASCII in JS:
//    written out as \p{...} sets, inside and outside character classes.
//  - `.` excludes only \n; `^` and `$` are line anchors (\n only) without any flag.
//  - Inline modifiers `(?i:...)` / `(?i)` do not exist in Node 20: letters are expanded to
//    their case variants ([sSſ]) in that scope, as Unicode simple case folding does.
//  - Possessive quantifiers (`?+ *+ ++`) and atomic groups `(?>...)` become
//    `(?=(?<g>X))\k<g>`: the lookahead matches greedily once and the backreference consumes
//    exactly that, with no backtracking into it. In Ruby syntax `{n,m}+` is not possessive
//    but a repeated interval, `(?:X{n,m})+`.
//  - \p{Han}-style script names become \p{Script=Han}; \p{^L} becomes \P{L}.
// Constructs with no faithful translation (backreferences, \G, class intersections,
// nested classes) throw, naming the pattern.

const WS = '\\p{White_Space}';
const WORD_CLASS = '\\p{L}\\p{M}\\p{N}\\p{Pc}';
const FOLD_EXTRA: Record<string, string> = { s: '\u017f', k: '\u212a', '\u00e5': '\u212b' };

/** The case variants of one character (itself first), as Unicode simple case folding pairs them. */
function caseVariants(ch: string): string[] {
  const out = new Set<string>([ch]);
  for (const v of [ch.toLowerCase(), ch.toUpperCase()]) if ([...v].length === 1) out.add(v);
  for (const v of [...out]) {
    const lower = v.toLowerCase();
    if (FOLD_EXTRA[lower]) out.add(FOLD_EXTRA[lower]);
    for (const [k, extra] of Object.entries(FOLD_EXTRA)) if (extra === v) { out.add(k); out.add(k.toUpperCase()); }
  }
  return [...out];
}

const SYNTAX = new Set('^$\\.*+?()[]{}|/'.split(''));
const escapeOutside = (ch: string): string => (SYNTAX.has(ch) ? '\\' + ch : ch);
const escapeInClass = (ch: string): string => ('\\]^-['.includes(ch) ? '\\' + ch : ch);

function propertyName(who: string, raw: string): { name: string; negate: boolean } {
  let name = raw, negate = false;
  if (name.startsWith('^')) { negate = true; name = name.slice(1); }
  const tryName = (n: string): boolean => { try { new RegExp(`\\p{${n}}`, 'u'); return true; } catch { return false; } };
  const aliases: Record<string, string> = { alpha: 'Alphabetic', alphabetic: 'Alphabetic', space: 'White_Space', upper: 'Uppercase', lower: 'Lowercase', any: 'Any' };
  const alias = aliases[name.toLowerCase().replace(/[\s_]/g, '')];
  for (const cand of [name, alias, `Script=${name}`, `General_Category=${name}`]) {
    if (cand && tryName(cand)) return { name: cand, negate };
  }
  throw new Error(`nodegrad: ${who}: unknown Unicode property \\p{${raw}} in a tokenizer regex`);
}

interface State { src: string; i: number; ci: boolean; dotAll: boolean; groups: number; who: string }

function fail(st: State, what: string): never {
  throw new Error(`nodegrad: ${st.who}: ${what} at offset ${st.i} of the tokenizer regex ${JSON.stringify(st.src)} has no JavaScript equivalent`);
}

/** Code point of an escape that means one character (\n, \x41, \x{1F600}, \u00e9 ...), or null. */
function charEscape(st: State, c: string): number | null {
  const src = st.src;
  const fixed: Record<string, number> = { n: 10, r: 13, t: 9, f: 12, v: 11, a: 7, e: 27, '0': 0 };
  if (c in fixed) return fixed[c];
  if (c === 'x' && src[st.i] === '{') {
    const end = src.indexOf('}', st.i);
    if (end < 0) fail(st, '\\x{ without }');
    const cp = parseInt(src.slice(st.i + 1, end), 16);
    st.i = end + 1;
    return cp;
  }
  if (c === 'x' || c === 'u') {
    const hex = (c === 'x' ? /^[0-9a-fA-F]{1,2}/ : /^[0-9a-fA-F]{4}/).exec(src.slice(st.i))?.[0];
    if (!hex) fail(st, `\\${c} without hex digits`);
    st.i += hex.length;
    return parseInt(hex, 16);
  }
  return null;
}

const cpSource = (cp: number): string => `\\u{${cp.toString(16)}}`;

function readProperty(st: State, upper: boolean): string {
  if (st.src[st.i] !== '{') fail(st, '\\p without {name}');
  const end = st.src.indexOf('}', st.i);
  if (end < 0) fail(st, '\\p{ without }');
  const p = propertyName(st.who, st.src.slice(st.i + 1, end));
  st.i = end + 1;
  return `\\${p.negate !== upper ? 'P' : 'p'}{${p.name}}`;
}

function parseClass(st: State): string {
  const src = st.src;
  let out = '[';
  if (src[st.i] === '^') { out += '^'; st.i++; }
  let first = true;
  while (st.i < src.length) {
    const c = src[st.i];
    if (c === ']' && !first) { st.i++; return out + ']'; }
    first = false;
    if (c === '[') {
      const posix = /^\[:(\^?)([a-z]+):\]/.exec(src.slice(st.i));
      if (!posix) fail(st, 'a nested character class');
      const sets: Record<string, string> = { alpha: '\\p{Alphabetic}', digit: '\\p{Nd}', space: WS, alnum: '\\p{Alphabetic}\\p{Nd}', punct: '\\p{P}', upper: '\\p{Uppercase}', lower: '\\p{Lowercase}', word: WORD_CLASS, cntrl: '\\p{Cc}', xdigit: '0-9A-Fa-f', blank: '\\p{Zs}\\t' };
      if (!sets[posix[2]] || posix[1]) fail(st, `the POSIX class [:${posix[1]}${posix[2]}:]`);
      out += sets[posix[2]];
      st.i += posix[0].length;
      continue;
    }
    if (c === '&' && src[st.i + 1] === '&') fail(st, 'a class intersection (&&)');
    let atom: string;
    let literal: string | null = null;
    st.i++;
    if (c === '\\') {
      const e = src[st.i++];
      if (e === undefined) fail(st, 'a trailing backslash');
      const cp = charEscape(st, e);
      if (cp !== null) { literal = String.fromCodePoint(cp); atom = cpSource(cp); }
      else if (e === 's') atom = WS;
      else if (e === 'S') atom = '\\P{White_Space}';
      else if (e === 'd') atom = '\\p{Nd}';
      else if (e === 'D') atom = '\\P{Nd}';
      else if (e === 'w') atom = WORD_CLASS;
      else if (e === 'h') atom = '0-9A-Fa-f';
      else if (e === 'p' || e === 'P') atom = readProperty(st, e === 'P');
      else if (/[A-Za-z0-9]/.test(e)) fail(st, `the escape \\${e} in a class`);
      else { literal = e; atom = escapeInClass(e); }
    } else {
      const cp = String.fromCodePoint(src.codePointAt(st.i - 1)!);
      st.i += cp.length - 1;
      literal = cp;
      atom = escapeInClass(cp);
    }
    // A range a-z: its end is read here so case expansion sees the whole range.
    if (literal !== null && src[st.i] === '-' && src[st.i + 1] !== ']' && st.i + 1 < src.length) {
      st.i++;
      let endCh: string;
      if (src[st.i] === '\\') {
        st.i++;
        const e = src[st.i++];
        const cp = charEscape(st, e);
        endCh = cp !== null ? String.fromCodePoint(cp) : e;
      } else {
        endCh = String.fromCodePoint(src.codePointAt(st.i)!);
        st.i += endCh.length;
      }
      out += `${atom}-${escapeInClass(endCh)}`;
      if (st.ci) {
        const lo = literal.codePointAt(0)!, hi = endCh.codePointAt(0)!;
        if (lo >= 0x61 && hi <= 0x7a) out += `${String.fromCharCode(lo - 32)}-${String.fromCharCode(hi - 32)}`;
        else if (lo >= 0x41 && hi <= 0x5a) out += `${String.fromCharCode(lo + 32)}-${String.fromCharCode(hi + 32)}`;
      }
      continue;
    }
    out += literal !== null && st.ci ? caseVariants(literal).map(escapeInClass).join('') : atom;
  }
  fail(st, 'an unterminated character class');
}

/** One atom (without its quantifier); null at `|`, `)` or the end. */
function parseAtom(st: State): string | null {
  const src = st.src;
  const c = src[st.i];
  if (c === undefined || c === '|' || c === ')') return null;
  st.i++;
  switch (c) {
    case '(': return parseGroup(st);
    case '[': return parseClass(st);
    case '.': return st.dotAll ? '[^]' : '[^\\n]';
    case '^': return '(?<![^\\n])';
    case '$': return '(?![^\\n])';
    case '\\': {
      const e = src[st.i++];
      if (e === undefined) fail(st, 'a trailing backslash');
      const cp = charEscape(st, e);
      if (cp !== null) return st.ci ? `[${caseVariants(String.fromCodePoint(cp)).map((v) => cpSource(v.codePointAt(0)!)).join('')}]` : cpSource(cp);
      switch (e) {
        case 's': return `[${WS}]`;
        case 'S': return '\\P{White_Space}';
        case 'd': return '\\p{Nd}';
        case 'D': return '\\P{Nd}';
        case 'w': return `[${WORD_CLASS}]`;
        case 'W': return `[^${WORD_CLASS}]`;
        case 'h': return '[0-9A-Fa-f]';
        case 'H': return '[^0-9A-Fa-f]';
        case 'A': return '(?<![^])';
        case 'z': return '(?![^])';
        case 'Z': return '(?=\\n?(?![^]))';
        case 'b': return `(?:(?<=[${WORD_CLASS}])(?![${WORD_CLASS}])|(?<![${WORD_CLASS}])(?=[${WORD_CLASS}]))`;
        case 'B': return `(?:(?<=[${WORD_CLASS}])(?=[${WORD_CLASS}])|(?<![${WORD_CLASS}])(?![${WORD_CLASS}]))`;
        case 'p': case 'P': return readProperty(st, e === 'P');
        default:
          if (/[A-Za-z0-9]/.test(e)) fail(st, `the escape \\${e}`);
          return st.ci ? `[${caseVariants(e).map(escapeInClass).join('')}]` : escapeOutside(e);
      }
    }
    default: {
      const cp = String.fromCodePoint(src.codePointAt(st.i - 1)!);
      st.i += cp.length - 1;
      if (st.ci) {
        const v = caseVariants(cp);
        if (v.length > 1) return `[${v.map(escapeInClass).join('')}]`;
      }
      return escapeOutside(cp);
    }
  }
}

function parseGroup(st: State): string {
  const src = st.src;
  const saved = { ci: st.ci, dotAll: st.dotAll };
  let open = '(?:', atomic = false;
  if (src[st.i] === '?') {
    const rest = src.slice(st.i + 1);
    let m: RegExpExecArray | null;
    if (rest.startsWith(':')) st.i += 2;
    else if (rest.startsWith('=') || rest.startsWith('!')) { open = `(?${rest[0]}`; st.i += 2; }
    else if (rest.startsWith('<=') || rest.startsWith('<!')) { open = `(?${rest.slice(0, 2)}`; st.i += 3; }
    else if (rest.startsWith('>')) { atomic = true; st.i += 2; }
    else if (rest.startsWith('#')) {
      const end = src.indexOf(')', st.i);
      if (end < 0) fail(st, 'an unterminated comment');
      st.i = end + 1;
      return '';
    } else if ((m = /^P?<([A-Za-z_][A-Za-z0-9_]*)>/.exec(rest))) st.i += 1 + m[0].length;
    else if ((m = /^([imx]*)(?:-([imx]*))?(:|\))/.exec(rest))) {
      const on = m[1], off = m[2] ?? '';
      if (on.includes('x') || off.includes('x')) fail(st, 'the extended (x) flag');
      const ci = on.includes('i') ? true : off.includes('i') ? false : st.ci;
      const dotAll = on.includes('m') ? true : off.includes('m') ? false : st.dotAll;
      st.i += 1 + m[0].length;
      if (m[3] === ')') { st.ci = ci; st.dotAll = dotAll; return ''; }   // applies to the rest of the enclosing group
      st.ci = ci; st.dotAll = dotAll;
    } else fail(st, `the group syntax (?${rest.slice(0, 2)}`);
  }
  const inner = parseAlternation(st);
  if (src[st.i] !== ')') fail(st, 'an unbalanced (');
  st.i++;
  st.ci = saved.ci; st.dotAll = saved.dotAll;
  return atomic ? atomicGroup(st, inner) : `${open}${inner})`;
}

function atomicGroup(st: State, inner: string): string {
  const name = `ngAtomic${st.groups++}`;
  return `(?:(?=(?<${name}>${inner}))\\k<${name}>)`;
}

const QUANT = /^(?:[*+?]|\{(\d*)(,?)(\d*)\})/;
/** One character, escape, property or class: takes a quantifier without a wrapping group. */
const SINGLE = /^(?:\\u\{[0-9a-f]+\}|\\[pP]\{[^}]+\}|\\.|[^\\[(]|\[(?:[^\]\\]|\\.)*\])$/su;
const quantified = (atom: string, q: string): string => (SINGLE.test(atom) ? `${atom}${q}` : `(?:${atom})${q}`);

function parseSequence(st: State): string {
  let out = '';
  for (;;) {
    let atom = parseAtom(st);
    if (atom === null) return out;
    let quantifiedAlready = false;
    for (;;) {
      const m = QUANT.exec(st.src.slice(st.i));
      if (!m || (m[0][0] === '{' && m[1] === '' && m[3] === '')) break;
      st.i += m[0].length;
      let q = m[0];
      if (q.startsWith('{,')) q = `{0${q.slice(1)}`;
      const base = quantifiedAlready ? `(?:${atom})` : atom;
      const next = st.src[st.i];
      if (next === '?') { st.i++; atom = quantified(base, q + '?'); }
      else if (next === '+' && q[0] !== '{') { st.i++; atom = atomicGroup(st, quantified(base, q)); }
      else atom = quantified(base, q);
      quantifiedAlready = true;
    }
    out += atom;
  }
}

function parseAlternation(st: State): string {
  let out = parseSequence(st);
  while (st.src[st.i] === '|') {
    st.i++;
    out += '|' + parseSequence(st);
  }
  return out;
}

/** JavaScript RegExp source (for flags 'gu') equivalent to an Oniguruma pattern. */
export function onigToJS(pattern: string, who = 'tokenizer'): string {
  const st: State = { src: pattern, i: 0, ci: false, dotAll: false, groups: 0, who };
  const out = parseAlternation(st);
  if (st.i < pattern.length) fail(st, 'an unbalanced )');
  return out;
}

/** A global, Unicode RegExp for an Oniguruma pattern. */
export function onigRegExp(pattern: string, who = 'tokenizer'): RegExp {
  const src = onigToJS(pattern, who);
  try {
    return new RegExp(src, 'gu');
  } catch (e) {
    throw new Error(`nodegrad: ${who}: the tokenizer regex ${JSON.stringify(pattern)} does not compile as JavaScript (${(e as Error).message})`);
  }
}

/** A RegExp matching a literal string (tokenizer.json `{"String": ...}` patterns). */
export function literalRegExp(s: string): RegExp {
  return new RegExp(s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&'), 'gu');
}
