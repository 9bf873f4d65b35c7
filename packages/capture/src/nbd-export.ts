/**
 * The export interface of `@gammaray/nbd`, declared structurally so this package does not depend on the protocol
 * layer. Rejections carry `errno` (5 = EIO, 22 = EINVAL, 28 = ENOSPC), which the NBD server sends to the client.
 */
export interface NbdExport {
  readonly name: string;
  readonly size: number;
  readonly minBlockSize: number;
  readonly preferredBlockSize: number;
  readonly maxBlockSize: number;
  readonly readOnly: boolean;
  read(offset: number, length: number): Promise<Uint8Array>;
  write(offset: number, data: Uint8Array, opts: { fua: boolean }): Promise<void>;
  writeZeroes(offset: number, length: number, opts: { fua: boolean; noHole: boolean }): Promise<void>;
  trim(offset: number, length: number, opts: { fua: boolean }): Promise<void>;
  flush(): Promise<void>;
  close(): Promise<void>;
}
