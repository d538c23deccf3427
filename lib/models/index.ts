export { GPT, checkGPTConfig, type GPTConfig, type GPTForwardOptions } from './gpt.js';
