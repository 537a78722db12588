// The proxy's own log (not the access log): text lines to stderr, level settable at runtime (/logging).
import { LOG_LEVEL_NAMES, type LogLevelName } from '../../wasm/src/index.ts';

let threshold = 2; // info

export function setLogLevel(level: LogLevelName): void {
  threshold = LOG_LEVEL_NAMES.indexOf(level);
}

export function logLevelName(): LogLevelName {
  return LOG_LEVEL_NAMES[threshold];
}

export function isLogLevel(value: string): value is LogLevelName {
  return (LOG_LEVEL_NAMES as readonly string[]).includes(value);
}

export function log(level: number, component: string, message: string): void {
  if (level < threshold) return;
  process.stderr.write(`${new Date().toISOString()} ${LOG_LEVEL_NAMES[level]} [${component}] ${message}\n`);
}

export const logInfo = (component: string, message: string) => log(2, component, message);
export const logWarn = (component: string, message: string) => log(3, component, message);
export const logError = (component: string, message: string) => log(4, component, message);
export const logDebug = (component: string, message: string) => log(1, component, message);
