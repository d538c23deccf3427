// nn: modules and the functional API.
export * as functional from './functional.js';
