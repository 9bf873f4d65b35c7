export type { NbdExport, NbdExportInfo, NbdExportProvider } from './backend.js';
export { NbdError, NbdExportBusyError } from './backend.js';
export { NbdServer } from './server.js';
export type { NbdServerOptions } from './server.js';
export type { ConnectionTls as NbdTls } from './connection.js';
export type { NbdLogger } from './logger.js';
export { silentLogger } from './logger.js';
export { NbdProtocolError, NbdProtocolErrorKind } from './errors.js';
export { NbdErrno, NbdCmd, NbdOpt, NbdRep, NbdInfo, TransmissionFlag, CmdFlag } from './protocol.js';
export {
  MAX_OPTION_LENGTH,
  MAX_OPTION_SKIP,
  MAX_OPTIONS,
  MAX_REQUEST_LENGTH,
  EXPORT_NAME_PATTERN,
  DEFAULT_HANDSHAKE_TIMEOUT_MS,
  DEFAULT_MAX_IN_FLIGHT,
  DEFAULT_MAX_IN_FLIGHT_BYTES,
} from './limits.js';
