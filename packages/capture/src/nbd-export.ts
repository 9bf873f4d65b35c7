/**
 * A captured disk is served as an `@gammaray/nbd` export. Rejections carry `errno` (5 = EIO) for logs; the NBD
 * server replies EIO for any backend failure that is not an NbdError.
 */
export type { NbdExport } from '@gammaray/nbd';
