/** Kinds of malformed input a wire decoder rejects. */
export const WireCorruptKind = {
  NotBson: 'NotBson',
  NotJson: 'NotJson',
  TooLarge: 'TooLarge',
  Version: 'Version',
  DiskId: 'DiskId',
  Timestamp: 'Timestamp',
  OpCount: 'OpCount',
  OpKind: 'OpKind',
  Offset: 'Offset',
  Length: 'Length',
  Data: 'Data',
  Flag: 'Flag',
  Field: 'Field',
} as const;
/** See {@link WireCorruptKind}. */
export type WireCorruptKind = (typeof WireCorruptKind)[keyof typeof WireCorruptKind];

/** Base class of every error this package throws. */
export class WireError extends Error {
  override name = 'WireError';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/**
 * Bytes from the wire (a stream message, a request, a KV value) are not a valid instance of the expected shape.
 * `field` names the offending field (`ops[3].offset`), `op` the index of the offending op when there is one.
 */
export class CorruptError extends WireError {
  override name = 'CorruptError';
  readonly kind: WireCorruptKind;
  readonly field: string | undefined;
  readonly op: number | undefined;
  constructor(kind: WireCorruptKind, message: string, details: { field?: string; op?: number; cause?: unknown } = {}) {
    super(message, { cause: details.cause });
    this.kind = kind;
    this.field = details.field;
    this.op = details.op;
  }
}

/** A disk id (or another subject token) does not match its rule; `rule` is the rule as a regular expression. */
export class InvalidNameError extends WireError {
  override name = 'InvalidNameError';
  readonly rule: string;
  readonly value: string;
  constructor(what: string, value: string, rule: string) {
    super(`invalid ${what} ${JSON.stringify(value.length > 80 ? `${value.slice(0, 80)}...` : value)}: must match ${rule}`);
    this.rule = rule;
    this.value = value;
  }
}

/** A value we were asked to encode breaks a wire limit (a caller bug, not bad input). */
export class EncodeError extends WireError {
  override name = 'EncodeError';
  readonly field: string | undefined;
  constructor(message: string, details: { field?: string } = {}) {
    super(message);
    this.field = details.field;
  }
}
