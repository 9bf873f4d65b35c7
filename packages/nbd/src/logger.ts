/** The subset of a pino logger the server uses: structured object first, message second. */
export interface NbdLogger {
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

const noop = (): void => {};

/** A logger that drops everything; the default when none is given. */
export const silentLogger: NbdLogger = { debug: noop, info: noop, warn: noop, error: noop };
