// Small pieces every certificate issuer here needs: PEM text of a certificate, a serial number, and
// writing a key or certificate file whole with its mode.
import { randomBytes } from 'node:crypto';
import { chmodSync, renameSync, writeFileSync } from 'node:fs';
import type * as x509 from '@peculiar/x509';

/** PEM text of a certificate, ending with a newline. */
export function pem(cert: x509.X509Certificate): string {
  const text = cert.toString('pem');
  return text.endsWith('\n') ? text : `${text}\n`;
}

/** 16 random bytes, positive, no leading zero byte. */
export function serialNumber(): string {
  const bytes = randomBytes(16);
  bytes[0] = (bytes[0]! & 0x7f) | 0x01;
  return bytes.toString('hex');
}

/** Writes `text` to a temporary name with `mode`, then renames it over `path`: readers never see half a file. */
export function writeAtomic(path: string, text: string, mode: number): void {
  const tmp = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  writeFileSync(tmp, text, { mode });
  chmodSync(tmp, mode); // in case of a umask wider than the mode
  renameSync(tmp, path);
}
