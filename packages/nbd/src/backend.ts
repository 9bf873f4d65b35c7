/** The contract between the protocol server and whatever stores the disk bytes. */

/** One export opened for one connection. Calls arrive in the order the client sent the requests. */
export interface NbdExport {
  readonly name: string;
  /** Size in bytes (a safe integer). */
  readonly size: number;
  /** Advertised in NBD_INFO_BLOCK_SIZE; a power of two in 1..65536. Requests not aligned to it get EINVAL. */
  readonly minBlockSize: number;
  /** Advertised in NBD_INFO_BLOCK_SIZE; a power of two >= minBlockSize. */
  readonly preferredBlockSize: number;
  /** Largest single request accepted; a multiple of minBlockSize, capped by MAX_REQUEST_LENGTH. */
  readonly maxBlockSize: number;
  readonly readOnly: boolean;
  /** Must resolve with exactly `length` bytes. */
  read(offset: number, length: number): Promise<Uint8Array>;
  /**
   * `data` is handed over: the server never writes to it or reuses its memory after the call (it is a fresh
   * buffer or a view of a received socket chunk), so the export may keep it without copying.
   */
  write(offset: number, data: Uint8Array, flags: { fua: boolean }): Promise<void>;
  /**
   * Optional: a buffer of exactly `length` bytes the server may receive a WRITE payload into and then pass to
   * write() (an export recycling its payload buffers). Asked only for a payload that has to be assembled from
   * several socket reads; undefined lets the server allocate one.
   */
  receiveBuffer?(length: number): Uint8Array | undefined;
  writeZeroes(offset: number, length: number, flags: { fua: boolean; noHole: boolean }): Promise<void>;
  trim(offset: number, length: number, flags: { fua: boolean }): Promise<void>;
  flush(): Promise<void>;
  /** Called once when the connection that opened the export ends (release the exclusive writer slot). */
  close(): Promise<void>;
}

/** Block geometry and mode of an export, as NBD_OPT_INFO reports it without opening. */
export interface NbdExportInfo {
  size: number;
  minBlockSize: number;
  preferredBlockSize: number;
  maxBlockSize: number;
  readOnly: boolean;
}

/** The set of exports a server offers. */
export interface NbdExportProvider {
  /** Names for NBD_OPT_LIST. */
  list(): readonly { name: string; description?: string }[];
  /** Open `name` for one connection; return undefined if unknown; throw NbdExportBusyError if another writer holds it. */
  open(name: string): Promise<NbdExport | undefined>;
  /** Info without opening (NBD_OPT_INFO): size and block sizes, or undefined if unknown. */
  describe(name: string): NbdExportInfo | undefined;
}

/**
 * Thrown by a backend to choose the error value of the reply (protocol numbers: EPERM 1, EIO 5, ENOMEM 12,
 * EINVAL 22, ENOSPC 28, ESHUTDOWN 108). Any other thrown value replies EIO. A value outside the protocol's set
 * is sent as EINVAL, as the protocol asks of servers.
 */
export class NbdError extends Error {
  override readonly name = 'NbdError';
  readonly errno: number;
  constructor(errno: number, message?: string, options?: { cause?: unknown }) {
    super(message ?? `NBD error ${errno}`, options);
    this.errno = errno;
  }
}

/** Thrown by NbdExportProvider.open when another connection holds the export's writer slot. */
export class NbdExportBusyError extends Error {
  override readonly name = 'NbdExportBusyError';
  constructor(message = 'export is in use by another connection', options?: { cause?: unknown }) {
    super(message, options);
  }
}
