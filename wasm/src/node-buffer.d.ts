// Node's Buffer has fast latin1 helpers that its type declarations leave out; the runtime's hot path
// uses them to move header bytes without intermediate copies.
declare global {
  interface Buffer {
    latin1Slice(start: number, end: number): string;
    latin1Write(value: string, offset: number, length?: number): number;
  }
}
export {};
