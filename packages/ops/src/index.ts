export { OpsServer } from './ops-server.js';
export type { Readiness } from './ops-server.js';
