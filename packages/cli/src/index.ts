export { main } from './main.js';
export { ExitCode, UserError, RuntimeFailure } from './errors.js';
export type { TerminalStreams } from './output.js';
