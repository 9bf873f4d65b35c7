/** Why the server dropped a connection. */
export const NbdProtocolErrorKind = {
  /** The peer closed or reset the socket. */
  ConnectionClosed: 'ConnectionClosed',
  /** The server is shutting down. */
  Shutdown: 'Shutdown',
  HandshakeTimeout: 'HandshakeTimeout',
  /** Client flags lack FIXED_NEWSTYLE or carry unknown bits. */
  BadClientFlags: 'BadClientFlags',
  /** An option header did not start with IHAVEOPT. */
  BadOptionMagic: 'BadOptionMagic',
  /** Option data beyond MAX_OPTION_SKIP. */
  OptionTooBig: 'OptionTooBig',
  TooManyOptions: 'TooManyOptions',
  /** NBD_OPT_EXPORT_NAME for an unknown or unavailable export: the protocol has no error reply for it. */
  ExportNameRejected: 'ExportNameRejected',
  /** A request header did not start with the request magic. */
  BadRequestMagic: 'BadRequestMagic',
  /** A WRITE whose length exceeds maxBlockSize: its payload cannot be skipped safely. */
  RequestTooBig: 'RequestTooBig',
  /** TLS is required and the client chose an export before NBD_OPT_STARTTLS (NBD_OPT_EXPORT_NAME has no error reply). */
  TlsRequired: 'TlsRequired',
  /** The TLS handshake after NBD_OPT_STARTTLS failed (no or an untrusted client certificate, a protocol error). */
  TlsHandshakeFailed: 'TlsHandshakeFailed',
  /** The client sent bytes after NBD_OPT_STARTTLS before its ACK (they would be taken as plaintext). */
  TlsPipelined: 'TlsPipelined',
} as const;
/** Why the server dropped a connection. */
export type NbdProtocolErrorKind = (typeof NbdProtocolErrorKind)[keyof typeof NbdProtocolErrorKind];

/** A connection-ending condition; logged by the server, never thrown to the caller. */
export class NbdProtocolError extends Error {
  override readonly name = 'NbdProtocolError';
  readonly kind: NbdProtocolErrorKind;
  constructor(kind: NbdProtocolErrorKind, message?: string, options?: { cause?: unknown }) {
    super(message ?? kind, options);
    this.kind = kind;
  }
}
