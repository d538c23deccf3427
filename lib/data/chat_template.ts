// Chat templates: the Jinja `chat_template` of a tokenizer_config.json (or chat_template.jinja)
// rendered with @huggingface/jinja and the variables transformers' apply_chat_template
// passes: messages, tools, documents, add_generation_prompt, the special tokens by name
// (bos_token, eos_token, ...), any extra keyword arguments (enable_thinking, date_string ...),
// and the functions raise_exception and strftime_now.
import { Environment, Interpreter, Template } from '@huggingface/jinja';

export interface ChatMessage {
  role: string;
  content: unknown;
  [key: string]: unknown;
}

export interface ChatTemplateOptions {
  /** Ends the prompt with the header of an assistant turn (default false). */
  addGenerationPrompt?: boolean;
  /** Token ids (default) or the rendered text. */
  tokenize?: boolean;
  /** Function schemas for tool-calling templates; passed as `tools` (none when absent). */
  tools?: unknown[] | null;
  /** Retrieval documents; passed as `documents` (none when absent). */
  documents?: unknown[] | null;
  /** Leaves the final (assistant) message open, for the model to continue it. */
  continueFinalMessage?: boolean;
  /** A template name from a tokenizer's named templates, or a Jinja template string. */
  chatTemplate?: string;
  /** The clock strftime_now reads (default: now). */
  now?: Date;
  /** Further template variables, e.g. { enable_thinking: false } for Qwen3. */
  extra?: Record<string, unknown>;
}

const MONTHS = ['January', 'February', 'March', 'April', 'May', 'June', 'July', 'August', 'September', 'October', 'November', 'December'];
const DAYS = ['Sunday', 'Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday'];

/** Python's strftime for the directives chat templates use (%d %b %Y %H:%M ...), in English. */
export function strftime(date: Date, format: string): string {
  const p2 = (n: number): string => String(n).padStart(2, '0');
  const start = Date.UTC(date.getFullYear(), 0, 1);
  const doy = Math.floor((Date.UTC(date.getFullYear(), date.getMonth(), date.getDate()) - start) / 86400000) + 1;
  return format.replace(/%([a-zA-Z%])/g, (all, d: string) => {
    switch (d) {
      case 'Y': return String(date.getFullYear());
      case 'y': return p2(date.getFullYear() % 100);
      case 'm': return p2(date.getMonth() + 1);
      case 'd': return p2(date.getDate());
      case 'e': return String(date.getDate()).padStart(2, ' ');
      case 'B': return MONTHS[date.getMonth()];
      case 'b': case 'h': return MONTHS[date.getMonth()].slice(0, 3);
      case 'A': return DAYS[date.getDay()];
      case 'a': return DAYS[date.getDay()].slice(0, 3);
      case 'H': return p2(date.getHours());
      case 'I': return p2(((date.getHours() + 11) % 12) + 1);
      case 'p': return date.getHours() < 12 ? 'AM' : 'PM';
      case 'M': return p2(date.getMinutes());
      case 'S': return p2(date.getSeconds());
      case 'j': return String(doy).padStart(3, '0');
      case 'w': return String(date.getDay());
      case '%': return '%';
      default: return all;
    }
  });
}

/** Python's range(stop) / range(start, stop[, step]). */
function range(start: number, stop?: number, step = 1): number[] {
  if (stop === undefined) { stop = start; start = 0; }
  if (step === 0) throw new Error('range() step must not be zero');
  const out: number[] = [];
  for (let i = start; step > 0 ? i < stop : i > stop; i += step) out.push(i);
  return out;
}

/** A tokenizer_config.json `chat_template`: one string, or a list of { name, template }. */
export function parseChatTemplates(who: string, v: unknown): Map<string, string> {
  const out = new Map<string, string>();
  if (v === undefined || v === null) return out;
  if (typeof v === 'string') { out.set('default', v); return out; }
  if (Array.isArray(v)) {
    for (const t of v as { name?: unknown; template?: unknown }[]) {
      if (!t || typeof t.name !== 'string' || typeof t.template !== 'string') throw new Error(`nodegrad: ${who}: chat_template entries must be { name, template } strings (got ${JSON.stringify(t)?.slice(0, 100)})`);
      out.set(t.name, t.template);
    }
    return out;
  }
  throw new Error(`nodegrad: ${who}: chat_template must be a string or a list of { name, template } (got ${typeof v})`);
}

export interface RenderChatOptions extends ChatTemplateOptions {
  /** bos_token, eos_token, ... as the template sees them. */
  specialTokens: Record<string, unknown>;
}

/** Compiled templates are kept by the caller (a tokenizer compiles each of its templates once). */
export function compileChatTemplate(who: string, source: string): Template {
  try {
    return new Template(source);
  } catch (e) {
    throw new Error(`nodegrad: ${who}: the chat template does not parse (${(e as Error).message})`);
  }
}

export function renderChatTemplate(who: string, template: Template, messages: readonly ChatMessage[], opts: RenderChatOptions): string {
  if (!Array.isArray(messages)) throw new Error(`nodegrad: ${who}: messages must be an array of { role, content } (got ${typeof messages})`);
  messages.forEach((m, i) => {
    if (!m || typeof m !== 'object' || typeof m.role !== 'string') {
      throw new Error(`nodegrad: ${who}: message ${i} must be an object with a string role (got ${JSON.stringify(m)?.slice(0, 100)})`);
    }
  });
  if (opts.continueFinalMessage && opts.addGenerationPrompt) {
    throw new Error(`nodegrad: ${who}: continueFinalMessage and addGenerationPrompt cannot both be set (the first continues the last message, the second opens a new one)`);
  }
  const now = opts.now;
  // Template.render() would declare its own raise_exception and strftime_now first (and a
  // second declaration is an error), so the environment is built here: Jinja's constants and
  // range(), then ours, then the template variables.
  const env = new Environment();
  const globals: Record<string, unknown> = {
    false: false, true: true, none: null, False: false, True: true, None: null, range,
    raise_exception: (msg: unknown) => { throw new Error(`nodegrad: ${who}: the chat template raised an error: ${String(msg)}`); },
    strftime_now: (format: unknown) => strftime(now ?? new Date(), String(format)),
    ...opts.specialTokens,
    messages,
    tools: opts.tools ?? null,
    documents: opts.documents ?? null,
    add_generation_prompt: opts.addGenerationPrompt === true,
    ...(opts.extra ?? {}),
  };
  for (const [k, v] of Object.entries(globals)) env.set(k, v);
  let text: string;
  try {
    text = (new Interpreter(env).run(template.parsed) as { value: string }).value;
  } catch (e) {
    const msg = (e as Error).message;
    throw msg.startsWith('nodegrad:') ? e : new Error(`nodegrad: ${who}: rendering the chat template failed (${msg})`);
  }
  if (opts.continueFinalMessage) {
    const last = messages[messages.length - 1];
    let content = last?.content;
    if (Array.isArray(content)) content = (content[content.length - 1] as { text?: unknown } | undefined)?.text;
    if (typeof content !== 'string') throw new Error(`nodegrad: ${who}: continueFinalMessage needs a final message with text content`);
    const tail = content.trim();
    const at = text.lastIndexOf(tail);
    if (tail === '' || at < 0) throw new Error(`nodegrad: ${who}: continueFinalMessage: the final message's content is not in the rendered chat`);
    text = text.slice(0, at + tail.length);
  }
  return text;
}
