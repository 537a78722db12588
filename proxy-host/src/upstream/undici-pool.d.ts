// Types for the one undici module the proxy imports directly (its package has no type file for it).
declare module 'undici/lib/dispatcher/pool.js' {
  import { Pool } from 'undici';
  export default Pool;
}
