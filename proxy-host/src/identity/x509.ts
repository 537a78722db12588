// @peculiar/x509 with Node's WebCrypto as its provider. The library resolves its services through
// tsyringe, which needs the Reflect metadata polyfill loaded before it: import x509 from here only.
import 'reflect-metadata';
import { webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';

x509.cryptoProvider.set(webcrypto as unknown as Crypto);

export { x509 };
