// Deterministic test strings for tokenizer comparisons: many scripts, code, whitespace runs,
// numbers, emoji sequences, embedded special tokens, combining marks, edge cases.

import { mulberry32 as prng } from '../lib/random.js';

const RANGES: [number, number][] = [
  [0x20, 0x7e], [0x20, 0x7e], [0x20, 0x7e], [0xa0, 0xff], [0x100, 0x17f], [0x370, 0x3ff], [0x400, 0x4ff], [0x590, 0x5ff],
  [0x600, 0x6ff], [0x900, 0x97f], [0xe00, 0xe7f], [0x1100, 0x11ff], [0xac00, 0xd7a3], [0x3040, 0x30ff], [0x4e00, 0x9fff],
  [0x300, 0x36f], [0x2000, 0x206f], [0x2190, 0x22ff], [0x2500, 0x257f], [0xff00, 0xffef], [0x1f300, 0x1f6ff], [0x1f900, 0x1f9ff],
  [0x10000, 0x1007f], [0x1d400, 0x1d7ff], [0x20000, 0x2a6df], [0xe000, 0xe0ff], [0x0, 0x1f],
];
const WORDS = ['the', 'The', 'THE', 'hello', 'world', 'tokenizer', 'Llama', 'Qwen', 'don\'t', "it's", "WE'LL", "they've", "I'm", "she'd", "'re",
  'naïve', 'café', 'Straße', 'ΣΊΣΥΦΟΣ', 'Москва', 'العربية', 'עברית', 'हिन्दी', 'ไทย', '한국어', '日本語', '中文字符', 'ひらがな', 'カタカナ',
  'über', 'façade', 'coöperate', 'résumé', 'x', 'y', 'foo_bar', 'camelCaseWord', 'snake_case', 'HTTPServer', 'v1.2.3', 'e.g.', 'U.S.A.',
  'https://example.com/a?b=c&d=e', 'user@example.org', '#hashtag', '@mention', '$100', '50%', '3.14159', '-42', '1e-9', '0x1F',
  'ſ', "'ſ", 'K', 'İstanbul', 'ǅ', 'ﬁ', 'Ⅻ', '①', '²', '½', '٣', '१२३'];
const PUNCT = ['.', ',', '!', '?', ';', ':', '...', '—', '–', '-', '(', ')', '[', ']', '{', '}', '"', '\'', '“', '”', '‘', '’', '«', '»', '¿', '¡', '。', '，', '、', '！', '？', '/', '\\', '|', '*', '&', '^', '%', '~', '`'];
const SPACES = [' ', ' ', ' ', '  ', '   ', '\t', '\n', '\n\n', '\r\n', ' \n', '\n ', '\t\t', '    ', '\u00a0', '\u2003', '\u3000', '\u0085', '\u2028', '\u200b', '\ufeff', '\u000b', '\u000c', '\r'];
const EMOJI = ['😀', '👍', '👍🏽', '👩‍💻', '👨‍👩‍👧‍👦', '🏳️‍🌈', '🇫🇷', '🇯🇵', '1️⃣', '❤️', '🧑🏿‍🚀', '🤷‍♀️', '✋🏻', '🐈‍⬛', '☃', '⚡️', '🫠'];
const CODE = [
  'def f(x):\n    return x ** 2\n',
  'for (let i = 0; i < n; i++) {\n\tsum += a[i];\n}',
  '#include <stdio.h>\nint main(void) { printf("%d\\n", 42); }',
  'SELECT id, name FROM users WHERE age >= 18 ORDER BY name;',
  '<div class="a">Hello &amp; bye</div>',
  '{"key": [1, 2.5, null, true], "nested": {"x": "y"}}',
  'x = [i for i in range(10) if i % 2 == 0]  # evens',
  'fn main() -> Result<(), Box<dyn Error>> { Ok(()) }',
  '    indented\n        more\n\t\ttabs\n',
  '$ ls -la | grep "^d" && echo done',
];

function pick<T>(r: () => number, a: readonly T[]): T { return a[Math.floor(r() * a.length)]; }

function randomChar(r: () => number): string {
  const [lo, hi] = pick(r, RANGES);
  let cp = lo + Math.floor(r() * (hi - lo + 1));
  if (cp >= 0xd800 && cp <= 0xdfff) cp = 0x41;
  return String.fromCodePoint(cp);
}

function digits(r: () => number): string {
  const n = 1 + Math.floor(r() * (r() < 0.2 ? 40 : 9));
  let s = '';
  for (let i = 0; i < n; i++) s += String(Math.floor(r() * 10));
  return s;
}

/** One random string mixing the building blocks above. */
function mixed(r: () => number, specials: readonly string[]): string {
  const parts: string[] = [];
  const n = 1 + Math.floor(r() * 12);
  for (let i = 0; i < n; i++) {
    const k = r();
    if (k < 0.25) parts.push(pick(r, WORDS));
    else if (k < 0.35) parts.push(pick(r, PUNCT));
    else if (k < 0.5) parts.push(pick(r, SPACES));
    else if (k < 0.58) parts.push(digits(r));
    else if (k < 0.64) parts.push(pick(r, EMOJI));
    else if (k < 0.70 && specials.length) parts.push(pick(r, specials));
    else if (k < 0.74) parts.push(pick(r, CODE));
    else { let s = ''; const m = 1 + Math.floor(r() * 6); for (let j = 0; j < m; j++) s += randomChar(r); parts.push(s); }
  }
  return parts.join('');
}

/** Fixed edge cases, then `count - fixed` random strings; the same list for the same seed. */
export function testStrings(count: number, seed: number, specials: readonly string[]): string[] {
  const fixed = [
    '', ' ', '  ', '\n', '\t', '\r\n', ' \t \n ', 'a', 'A', '0', '00', '000', '0000', '12345678901234567890',
    'Hello world', ' Hello world', 'Hello  world', 'Hello world ', "I'm don't we'll it's", "I'M DON'T WE'LL IT'S",
    'e\u0301', '\u00e9', 'n\u0303o', 'a\u0308\u0304', 'A\u030a vs \u212b vs \u00c5', '\u1e9b\u0323', 'Ω vs \u2126',
    '👩🏽‍💻👨‍👩‍👧‍👦🏳️‍🌈🇫🇷1️⃣', '😀'.repeat(50), 'a'.repeat(3000), 'ab'.repeat(1000), '1'.repeat(500), ' '.repeat(300), '\n'.repeat(100),
    'x'.repeat(100) + ' ' + 'y'.repeat(100), '漢'.repeat(400), 'ا'.repeat(300), 'supercalifragilisticexpialidocious'.repeat(20),
    ...specials.flatMap((s) => [s, s + s, ` ${s} `, `a${s}b`, `${s}\n`, s.slice(0, -1), s.slice(1), `${s}Hello${s}`]),
    ...CODE, ...WORDS, ...EMOJI, ...PUNCT.map((p) => `word${p} next`),
  ];
  const r = prng(seed);
  const out = [...fixed];
  while (out.length < count) out.push(mixed(r, specials));
  return out.slice(0, Math.max(count, fixed.length));
}
