// Decodes one instruction of a function body: its opcode and immediates, and the little the metering
// rewrite needs to know about it (does it open or close a block, call, or touch a length-sized range).
// Covers the instruction set V8 runs in Node 20 and what is close behind: MVP, sign extension,
// saturating truncation, bulk memory, reference types, multi-value, SIMD (and relaxed SIMD), threads,
// tail calls, exception handling (legacy and exnref), typed function references. Anything else is
// refused by name: a module the rewriter cannot read is never run unmetered.
import { ByteReader, MeteringError } from './bytes.ts';

export const enum Op {
  /** No control-flow meaning for metering. */
  Plain,
  /** block, if, try, try_table: opens a frame closed by `end` (or `delegate`). */
  Block,
  /** loop: opens a frame whose start is a branch target. */
  Loop,
  /** end: closes the innermost frame (or the function). */
  End,
  /** delegate: closes a legacy `try` frame like `end`. */
  Delegate,
  /** call of a function by index (target in `index`). */
  Call,
  /** return_call by index. */
  ReturnCall,
  /** call_indirect, return_call_indirect, call_ref, return_call_ref. */
  CallIndirect,
  /** An instruction whose work grows with an i32 count on top of the stack (bulk memory/table). */
  Bulk,
  /** ref.func: the function (in `index`) may now be called by reference. */
  RefFunc,
}

export interface Instruction {
  op: Op;
  /** Call: the function index. */
  index: number;
  /** Bulk: log2 of the elements one fuel unit pays for. */
  bulkShift: number;
}

/** Bytes per fuel unit for bulk memory operations (2^6 = 64 bytes). */
const MEMORY_BULK_SHIFT = 6;
/** Table elements per fuel unit (table operations touch a reference per element). */
const TABLE_BULK_SHIFT = 0;

/** A value type (locals, select, block results): one byte, or (ref null? heaptype). */
export function skipValueType(r: ByteReader): void {
  const b = r.u8();
  if (b === 0x63 || b === 0x64) r.sleb(33);
}

/** A block type: empty (0x40), a value type, or a type index (s33). */
function skipBlockType(r: ByteReader): void {
  const b = r.bytes[r.pos];
  if (b === 0x63 || b === 0x64) {
    r.pos++;
    r.sleb(33);
    return;
  }
  r.sleb(33);
}

/** memarg: alignment (bit 6 set: a memory index follows, multi-memory) and offset. */
function skipMemarg(r: ByteReader): void {
  const align = r.u32();
  if (align & 0x40) r.u32();
  r.u32();
}

/**
 * Reads the instruction at `r.pos` into `out` and leaves `r.pos` after it. Throws MeteringError for
 * an opcode it does not know (with the opcode and the byte offset).
 */
export function readInstruction(r: ByteReader, out: Instruction): void {
  const at = r.pos;
  const opcode = r.u8();
  out.op = Op.Plain;
  switch (opcode) {
    case 0x00: // unreachable
    case 0x01: // nop
    case 0x05: // else
    case 0x0f: // return
    case 0x19: // catch_all
    case 0x1a: // drop
    case 0x1b: // select
    case 0x0a: // throw_ref
    case 0xd1: // ref.is_null
    case 0xd3: // ref.as_non_null
    case 0xd5: // ref.eq
      return;
    case 0x02: // block
    case 0x04: // if
    case 0x06: // try (legacy exceptions)
      skipBlockType(r);
      out.op = Op.Block;
      return;
    case 0x03: // loop
      skipBlockType(r);
      out.op = Op.Loop;
      return;
    case 0x1f: {
      // try_table bt vec(catch)
      skipBlockType(r);
      const n = r.u32();
      for (let i = 0; i < n; i++) {
        const kind = r.u8();
        if (kind === 0x00 || kind === 0x01) r.u32(); // catch / catch_ref: tag index
        else if (kind !== 0x02 && kind !== 0x03) throw new MeteringError(`unknown try_table catch kind 0x${kind.toString(16)} at byte ${r.pos - 1}`);
        r.u32(); // label
      }
      out.op = Op.Block;
      return;
    }
    case 0x0b:
      out.op = Op.End;
      return;
    case 0x18: // delegate label
      r.u32();
      out.op = Op.Delegate;
      return;
    case 0x07: // catch tag
    case 0x08: // throw tag
    case 0x09: // rethrow label
    case 0x0c: // br
    case 0x0d: // br_if
    case 0xd2: // ref.func
      out.index = r.u32();
      out.op = Op.RefFunc;
      return;
    case 0xd4: // br_on_null
    case 0xd6: // br_on_non_null
    case 0x20: // local.get
    case 0x21: // local.set
    case 0x22: // local.tee
    case 0x23: // global.get
    case 0x24: // global.set
    case 0x25: // table.get
    case 0x26: // table.set
      r.u32();
      return;
    case 0x0e: {
      // br_table vec(label) label
      const n = r.u32();
      for (let i = 0; i <= n; i++) r.u32();
      return;
    }
    case 0x10: // call
      out.index = r.u32();
      out.op = Op.Call;
      return;
    case 0x12: // return_call
      out.index = r.u32();
      out.op = Op.ReturnCall;
      return;
    case 0x11: // call_indirect type table
    case 0x13: // return_call_indirect type table
      r.u32();
      r.u32();
      out.op = Op.CallIndirect;
      return;
    case 0x14: // call_ref type
    case 0x15: // return_call_ref type
      r.u32();
      out.op = Op.CallIndirect;
      return;
    case 0x1c: {
      // select with value types
      const n = r.u32();
      for (let i = 0; i < n; i++) skipValueType(r);
      return;
    }
    case 0x3f: // memory.size mem
    case 0x40: // memory.grow mem
      r.u32();
      return;
    case 0x41: // i32.const
      r.sleb(32);
      return;
    case 0x42: // i64.const
      r.sleb(64);
      return;
    case 0x43: // f32.const
      r.skip(4);
      return;
    case 0x44: // f64.const
      r.skip(8);
      return;
    case 0xd0: // ref.null heaptype
      r.sleb(33);
      return;
    case 0xfc:
      return readMisc(r, out, at);
    case 0xfd:
      return readSimd(r, at);
    case 0xfe:
      return readAtomic(r, at);
  }
  // Loads and stores (0x28..0x3e) carry a memarg; numeric instructions (0x45..0xc4) carry nothing.
  if (opcode >= 0x28 && opcode <= 0x3e) return skipMemarg(r);
  if (opcode >= 0x45 && opcode <= 0xc4) return;
  throw new MeteringError(`unknown opcode 0x${opcode.toString(16).padStart(2, '0')} at byte ${at}`);
}

function readMisc(r: ByteReader, out: Instruction, at: number): void {
  const sub = r.u32();
  switch (sub) {
    case 0: case 1: case 2: case 3: case 4: case 5: case 6: case 7: // trunc_sat
      return;
    case 8: // memory.init data mem
      r.u32();
      r.u32();
      out.op = Op.Bulk;
      out.bulkShift = MEMORY_BULK_SHIFT;
      return;
    case 9: // data.drop
    case 13: // elem.drop
    case 16: // table.size
      r.u32();
      return;
    case 10: // memory.copy mem mem
      r.u32();
      r.u32();
      out.op = Op.Bulk;
      out.bulkShift = MEMORY_BULK_SHIFT;
      return;
    case 11: // memory.fill mem
      r.u32();
      out.op = Op.Bulk;
      out.bulkShift = MEMORY_BULK_SHIFT;
      return;
    case 12: // table.init elem table
    case 14: // table.copy table table
      r.u32();
      r.u32();
      out.op = Op.Bulk;
      out.bulkShift = TABLE_BULK_SHIFT;
      return;
    case 15: // table.grow
    case 17: // table.fill
      r.u32();
      out.op = Op.Bulk;
      out.bulkShift = TABLE_BULK_SHIFT;
      return;
  }
  throw new MeteringError(`unknown instruction 0xfc ${sub} at byte ${at}`);
}

function readSimd(r: ByteReader, at: number): void {
  const sub = r.u32();
  if (sub <= 11 || sub === 92 || sub === 93) return skipMemarg(r); // v128 loads and stores, load*_zero
  if (sub === 12 || sub === 13) return r.skip(16); // v128.const, i8x16.shuffle
  if (sub >= 21 && sub <= 34) return r.skip(1); // extract_lane / replace_lane
  if (sub >= 84 && sub <= 91) {
    // load/store lane: memarg then lane
    skipMemarg(r);
    r.skip(1);
    return;
  }
  // Everything else up to relaxed SIMD (0x100..0x113) has no immediates.
  if (sub <= 0x113) return;
  throw new MeteringError(`unknown instruction 0xfd ${sub} at byte ${at}`);
}

function readAtomic(r: ByteReader, at: number): void {
  const sub = r.u32();
  if (sub === 0x03) {
    // atomic.fence: one reserved zero byte
    r.u8();
    return;
  }
  if (sub <= 0x02 || (sub >= 0x10 && sub <= 0x4e)) return skipMemarg(r);
  throw new MeteringError(`unknown instruction 0xfe ${sub} at byte ${at}`);
}
