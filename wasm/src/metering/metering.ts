// CPU budget by instrumentation ("fuel"): before a module is compiled, every function entry and every
// loop header gets a few instructions that subtract the static cost of the code they guard from a
// counter and trap when it goes below zero. The host sets the counter before each callback, so no
// callback of any module can run unbounded, whatever SDK or compiler built it.
//
// Costs are counted in instructions: one unit per instruction of the straight-line code a check
// guards (a loop's body up to its nested loops, or a function's body outside its loops), plus a fixed
// price for a call to a host function or through a table, plus a price per 64 bytes for bulk memory
// operations (charged at run time from their length). A check costs about ten instructions, so small
// functions go without one: a function that is not exported, not reachable through a table or by
// reference, not part of a recursion, and whose code outside loops (with its own unchecked callees)
// costs at most UNCHECKED_MAX_COST, is charged at each direct call site instead. Every call chain
// therefore passes a check at least every UNCHECKED_MAX_COST units, and every loop iteration passes one.
// The counter is a new mutable global the module's own code cannot name (its index is past every
// global the code was validated against); the host reads and sets it through two appended functions.
import { ByteReader, ByteWriter, MeteringError } from './bytes.ts';
import { Op, readInstruction, skipValueType, type Instruction } from './instructions.ts';

export { MeteringError } from './bytes.ts';

/** Export that sets the fuel counter (an i64, set from a JS number): (f64) -> (). */
export const FUEL_SET_EXPORT = '__wasmesh_fuel_set';
/** Export that reads the fuel counter: () -> f64. Negative after the budget ran out. */
export const FUEL_GET_EXPORT = '__wasmesh_fuel_get';

/** What a call into the host costs in fuel units, on top of the call instruction. */
export const HOST_CALL_COST = 300;
/**
 * What a call through a table costs on top of the call instruction; also the largest static cost of
 * a function left without its own check (such a function may be reached through a table).
 */
export const INDIRECT_CALL_COST = 64;
/** Largest cost of code outside loops (with its unchecked callees) for a function to go without its own check. */
export const UNCHECKED_MAX_COST = 1000;
/** Largest static cost charged in one check. */
const MAX_STATIC_COST = 2 ** 40;

const SECTION = { custom: 0, type: 1, import: 2, function: 3, global: 6, export: 7, start: 8, element: 9, code: 10 } as const;
/** Where each known section sits in a module, for inserting one that was missing. */
const SECTION_RANK: Record<number, number> = { 1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 13: 6, 6: 7, 7: 8, 8: 9, 9: 10, 12: 11, 10: 12, 11: 13 };

interface Section {
  id: number;
  start: number;
  end: number;
  /** Replacement content, when rewritten. */
  content?: Uint8Array;
}

interface FunctionPlan {
  /** Offset (in the body's instruction bytes) right after each loop header, and the cost that check charges. */
  loopAt: number[];
  loopCost: number[];
  /** Cost of the code outside loops, charged at entry (or at call sites for an unchecked function). */
  entryCost: number;
  /** Offsets of bulk instructions and their shift (fuel unit = 2^shift elements). */
  bulkAt: number[];
  bulkShift: number[];
  /** Direct calls of defined functions, by segment (0: entry, i+1: loop i), for adding unchecked callees' costs. */
  callSegment: number[];
  callTarget: number[];
  /** Calls through a table or by reference. */
  callsIndirect: boolean;
  paramCount: number;
  /** Local declaration groups and where the instructions start, in the original body. */
  localsEnd: number;
  localCount: number;
  bodyStart: number;
  bodyEnd: number;
}

/**
 * Returns the module with metering added; throws MeteringError naming what it could not read (an
 * unknown instruction, a malformed section, an export name it needs already taken).
 */
export function meterModule(bytes: Uint8Array, initialFuel: number): Uint8Array {
  const sections = readSections(bytes);
  const find = (id: number) => sections.find((s) => s.id === id);

  // Types: how many, and each function type's parameter count (for the index of an added local).
  const paramCounts: number[] = [];
  const typeSection = find(SECTION.type);
  if (typeSection) {
    const r = new ByteReader(bytes, typeSection.start, typeSection.end);
    const n = r.u32();
    for (let i = 0; i < n; i++) {
      const form = r.u8();
      if (form !== 0x60) throw new MeteringError(`type ${i} is not a function type (form 0x${form.toString(16)}); GC types are not supported`);
      const params = r.u32();
      for (let p = 0; p < params; p++) skipValueType(r);
      const results = r.u32();
      for (let p = 0; p < results; p++) skipValueType(r);
      paramCounts.push(params);
    }
  }

  // Imports: imported functions come first in the function index space, imported globals first in the global one.
  let importedFunctions = 0;
  let importedGlobals = 0;
  const importSection = find(SECTION.import);
  if (importSection) {
    const r = new ByteReader(bytes, importSection.start, importSection.end);
    const n = r.u32();
    for (let i = 0; i < n; i++) {
      r.name();
      r.name();
      const kind = r.u8();
      switch (kind) {
        case 0x00: // function: type index
          r.u32();
          importedFunctions++;
          break;
        case 0x01: // table: reftype, limits
          skipValueType(r);
          skipLimits(r);
          break;
        case 0x02: // memory: limits
          skipLimits(r);
          break;
        case 0x03: // global: valtype, mutability
          skipValueType(r);
          r.u8();
          importedGlobals++;
          break;
        case 0x04: // tag: attribute, type index
          r.u8();
          r.u32();
          break;
        default:
          throw new MeteringError(`import ${i} has unknown kind 0x${kind.toString(16)}`);
      }
    }
  }

  const functionTypes: number[] = [];
  const functionSection = find(SECTION.function);
  if (functionSection) {
    const r = new ByteReader(bytes, functionSection.start, functionSection.end);
    const n = r.u32();
    for (let i = 0; i < n; i++) functionTypes.push(r.u32());
  }

  let definedGlobals = 0;
  const globalSection = find(SECTION.global);
  if (globalSection) definedGlobals = new ByteReader(bytes, globalSection.start, globalSection.end).u32();
  const fuelGlobal = importedGlobals + definedGlobals;

  const exportSection = find(SECTION.export);
  let exportCount = 0;
  const exportedFunctions: number[] = [];
  if (exportSection) {
    const r = new ByteReader(bytes, exportSection.start, exportSection.end);
    exportCount = r.u32();
    for (let i = 0; i < exportCount; i++) {
      const name = r.name();
      if (name === FUEL_SET_EXPORT || name === FUEL_GET_EXPORT) throw new MeteringError(`the module already exports "${name}", a name the host reserves`);
      const kind = r.u8();
      const index = r.u32();
      if (kind === 0x00) exportedFunctions.push(index);
    }
  }

  // Functions the host or other code may call without a direct call: exports, the start function,
  // table elements and ref.func targets anywhere. Each needs its own check.
  const referenced = new Set<number>(exportedFunctions);
  const startSection = find(SECTION.start);
  if (startSection) referenced.add(new ByteReader(bytes, startSection.start, startSection.end).u32());
  const elementSection = find(SECTION.element);
  if (elementSection) collectElementFunctions(bytes, elementSection, referenced);
  if (globalSection) collectGlobalFunctions(bytes, globalSection, referenced);

  // Code: plan every function first (an unchecked callee's cost is charged at its callers' sites).
  const codeSection = find(SECTION.code);
  const plans: FunctionPlan[] = [];
  if (codeSection) {
    const r = new ByteReader(bytes, codeSection.start, codeSection.end);
    const n = r.u32();
    if (n !== functionTypes.length) throw new MeteringError(`the code section has ${n} bodies for ${functionTypes.length} functions`);
    const ins: Instruction = { op: Op.Plain, index: 0, bulkShift: 0 };
    for (let i = 0; i < n; i++) {
      const size = r.u32();
      const end = r.pos + size;
      if (end > r.end) throw new MeteringError(`function ${importedFunctions + i}: body runs past the code section`);
      const paramCount = paramCounts[functionTypes[i]];
      if (paramCount === undefined) throw new MeteringError(`function ${importedFunctions + i} has unknown type ${functionTypes[i]}`);
      try {
        plans.push(planFunction(bytes, r.pos, end, paramCount, importedFunctions, ins, referenced));
      } catch (err) {
        if (err instanceof MeteringError) throw new MeteringError(`function ${importedFunctions + i}: ${err.message}`);
        throw err;
      }
      r.pos = end;
    }
  }
  const { unchecked, siteCost } = chooseUnchecked(plans, referenced, importedFunctions);
  const setFunction = importedFunctions + plans.length;
  const getFunction = setFunction + 1;
  const setType = paramCounts.length;
  const getType = setType + 1;

  // Rewrite.
  const code = new ByteWriter(bytes.length + 1024);
  code.u32(plans.length + 2);
  const body = new ByteWriter(4096);
  for (let i = 0; i < plans.length; i++) {
    body.length = 0;
    emitFunction(bytes, plans[i], unchecked[i], siteCost, unchecked, fuelGlobal, body);
    code.u32(body.length).bytes(body.view());
  }
  // The two accessors: set (f64 local 0, truncated -> i64 global) and get (i64 -> f64).
  body.length = 0;
  body.u8(0).u8(0x20).u32(0).u8(0xfc).u32(6).u8(0x24).u32(fuelGlobal).u8(0x0b); // i64.trunc_sat_f64_s
  code.u32(body.length).bytes(body.view());
  body.length = 0;
  body.u8(0).u8(0x23).u32(fuelGlobal).u8(0xb9).u8(0x0b); // f64.convert_i64_s
  code.u32(body.length).bytes(body.view());

  const types = new ByteWriter();
  types.u32(paramCounts.length + 2);
  if (typeSection) types.bytes(afterCount(bytes, typeSection));
  types.u8(0x60).u32(1).u8(0x7c).u32(0); // (f64) -> ()
  types.u8(0x60).u32(0).u32(1).u8(0x7c); // () -> (f64)

  const functions = new ByteWriter();
  functions.u32(functionTypes.length + 2);
  if (functionSection) functions.bytes(afterCount(bytes, functionSection));
  functions.u32(setType).u32(getType);

  const globals = new ByteWriter();
  globals.u32(definedGlobals + 1);
  if (globalSection) globals.bytes(afterCount(bytes, globalSection));
  globals.u8(0x7e).u8(0x01).u8(0x42).s64(clampFuel(initialFuel)).u8(0x0b);

  const exportsOut = new ByteWriter();
  exportsOut.u32(exportCount + 2);
  if (exportSection) exportsOut.bytes(afterCount(bytes, exportSection));
  exportsOut.name(FUEL_SET_EXPORT).u8(0x00).u32(setFunction);
  exportsOut.name(FUEL_GET_EXPORT).u8(0x00).u32(getFunction);

  const replaced = new Map<number, Uint8Array>([
    [SECTION.type, types.view()],
    [SECTION.function, functions.view()],
    [SECTION.global, globals.view()],
    [SECTION.export, exportsOut.view()],
    [SECTION.code, code.view()],
  ]);
  return writeModule(bytes, sections, replaced);
}

/** Clamps a budget to a whole number the i64 counter and a JS number both hold exactly. */
export function clampFuel(fuel: number): number {
  if (!(fuel > 0)) return 0;
  return Math.min(Math.floor(fuel), Number.MAX_SAFE_INTEGER);
}

function skipLimits(r: ByteReader): void {
  const flags = r.u8();
  r.u32();
  if (flags & 0x01) r.u32();
}

/** The section's content after its leading element count. */
function afterCount(bytes: Uint8Array, s: Section): Uint8Array {
  const r = new ByteReader(bytes, s.start, s.end);
  r.u32();
  return bytes.subarray(r.pos, s.end);
}

function readSections(bytes: Uint8Array): Section[] {
  if (bytes.length < 8) throw new MeteringError('not a wasm module (shorter than its header)');
  const r = new ByteReader(bytes, 8);
  const sections: Section[] = [];
  while (!r.done) {
    const id = r.u8();
    const size = r.u32();
    const start = r.pos;
    r.skip(size);
    sections.push({ id, start, end: start + size });
  }
  return sections;
}

function writeModule(bytes: Uint8Array, sections: Section[], replaced: Map<number, Uint8Array>): Uint8Array {
  const out = new ByteWriter(bytes.length + 4096);
  out.bytes(bytes.subarray(0, 8));
  const written = new Set<number>();
  const writeSection = (id: number, content: Uint8Array) => {
    out.u8(id).u32(content.length).bytes(content);
    written.add(id);
  };
  // A replaced section that the module lacked goes before the first known section ranked after it.
  const insertMissingBefore = (rank: number) => {
    for (const [id, content] of replaced) {
      if (!written.has(id) && !sections.some((s) => s.id === id) && SECTION_RANK[id] < rank) writeSection(id, content);
    }
  };
  for (const s of sections) {
    if (s.id !== SECTION.custom) insertMissingBefore(SECTION_RANK[s.id] ?? 0);
    const content = replaced.get(s.id);
    if (content !== undefined && s.id !== SECTION.custom) writeSection(s.id, content);
    else out.u8(s.id).u32(s.end - s.start).bytes(bytes.subarray(s.start, s.end));
  }
  insertMissingBefore(Infinity);
  return out.view().slice();
}

/** First pass over one body: where the checks go and what each one guards. */
function planFunction(bytes: Uint8Array, start: number, end: number, paramCount: number, importedFunctions: number, ins: Instruction, referenced: Set<number>): FunctionPlan {
  const r = new ByteReader(bytes, start, end);
  const groups = r.u32();
  let localCount = 0;
  for (let g = 0; g < groups; g++) {
    localCount += r.u32();
    skipValueType(r);
  }
  const localsEnd = r.pos;
  const plan: FunctionPlan = {
    loopAt: [],
    loopCost: [],
    entryCost: 0,
    bulkAt: [],
    bulkShift: [],
    callSegment: [],
    callTarget: [],
    callsIndirect: false,
    paramCount,
    localsEnd,
    localCount,
    bodyStart: start,
    bodyEnd: end,
  };
  // The control stack: for each open frame, the segment its code charges (a loop opens its own).
  const frames: number[] = [];
  let segment = 0;
  const costs: number[] = [0];
  while (r.pos < end) {
    const at = r.pos;
    readInstruction(r, ins);
    let cost = 1;
    switch (ins.op) {
      case Op.Block:
        frames.push(segment);
        break;
      case Op.Loop:
        frames.push(segment);
        plan.loopAt.push(r.pos - localsEnd);
        costs.push(0);
        segment = costs.length - 1;
        break;
      case Op.End:
      case Op.Delegate:
        if (frames.length === 0) {
          if (r.pos !== end) throw new MeteringError(`code after the function's final end at byte ${r.pos}`);
        } else {
          segment = frames.pop()!;
        }
        break;
      case Op.Call:
      case Op.ReturnCall:
        if (ins.index < importedFunctions) cost += HOST_CALL_COST;
        else {
          plan.callSegment.push(segment);
          plan.callTarget.push(ins.index - importedFunctions);
        }
        break;
      case Op.CallIndirect:
        plan.callsIndirect = true;
        cost += INDIRECT_CALL_COST;
        break;
      case Op.RefFunc:
        referenced.add(ins.index);
        break;
      case Op.Bulk:
        plan.bulkAt.push(at - localsEnd);
        plan.bulkShift.push(ins.bulkShift);
        break;
    }
    costs[segment] += cost;
  }
  if (frames.length !== 0) throw new MeteringError('a block is not closed before the end of the body');
  plan.entryCost = costs[0];
  for (let i = 1; i < costs.length; i++) plan.loopCost.push(costs[i]);
  return plan;
}

/** Second pass: the body with its checks. */
function emitFunction(
  bytes: Uint8Array,
  plan: FunctionPlan,
  unchecked: boolean,
  siteCost: number[],
  uncheckedAll: boolean[],
  fuelGlobal: number,
  out: ByteWriter,
): void {
  // Unchecked callees' costs are charged where they are called.
  const costs = segmentCosts(plan, siteCost, uncheckedAll);
  const entryCost = costs[0];
  const loopCost = costs.slice(1);
  // Locals: the original declarations, plus one i32 scratch local when bulk instructions need their length.
  const needsScratch = plan.bulkAt.length > 0;
  const scratch = plan.paramCount + plan.localCount;
  const localsStart = plan.bodyStart;
  if (needsScratch) {
    const r = new ByteReader(bytes, localsStart, plan.localsEnd);
    const groups = r.u32();
    out.u32(groups + 1).bytes(bytes.subarray(r.pos, plan.localsEnd)).u32(1).u8(0x7f);
  } else {
    out.bytes(bytes.subarray(localsStart, plan.localsEnd));
  }
  if (!unchecked) emitCheck(out, fuelGlobal, entryCost);
  const code = bytes.subarray(plan.localsEnd, plan.bodyEnd);
  let from = 0;
  let loop = 0;
  let bulk = 0;
  // Merge the two sorted insertion lists: checks after loop headers, charges before bulk instructions.
  while (loop < plan.loopAt.length || bulk < plan.bulkAt.length) {
    const nextLoop = loop < plan.loopAt.length ? plan.loopAt[loop] : Infinity;
    const nextBulk = bulk < plan.bulkAt.length ? plan.bulkAt[bulk] : Infinity;
    if (nextLoop <= nextBulk) {
      out.bytes(code.subarray(from, nextLoop));
      emitCheck(out, fuelGlobal, loopCost[loop]);
      from = nextLoop;
      loop++;
    } else {
      out.bytes(code.subarray(from, nextBulk));
      emitBulkCharge(out, fuelGlobal, scratch, plan.bulkShift[bulk]);
      from = nextBulk;
      bulk++;
    }
  }
  out.bytes(code.subarray(from));
}

/** fuel -= cost; if (fuel < 0) unreachable */
function emitCheck(out: ByteWriter, fuel: number, cost: number): void {
  const c = Math.min(cost, MAX_STATIC_COST);
  out.u8(0x23).u32(fuel).u8(0x42).s64(c).u8(0x7d).u8(0x24).u32(fuel); // global.get, i64.const, i64.sub, global.set
  emitTrapIfNegative(out, fuel);
}

/** With the element count (an i32) on top of the stack, kept there: fuel -= count >> shift; trap if negative. */
function emitBulkCharge(out: ByteWriter, fuel: number, scratch: number, shift: number): void {
  out.u8(0x22).u32(scratch); // local.tee scratch
  out.u8(0x23).u32(fuel).u8(0x20).u32(scratch).u8(0xad); // global.get, local.get, i64.extend_i32_u
  if (shift > 0) out.u8(0x42).s64(shift).u8(0x88); // i64.const, i64.shr_u
  out.u8(0x7d).u8(0x24).u32(fuel); // i64.sub, global.set
  emitTrapIfNegative(out, fuel);
}

function emitTrapIfNegative(out: ByteWriter, fuel: number): void {
  out.u8(0x23).u32(fuel).u8(0x42).s64(0).u8(0x53); // global.get, i64.const 0, i64.lt_s
  out.u8(0x04).u8(0x40).u8(0x00).u8(0x0b); // if unreachable end
}

/** The cost each check of `plan` charges: [entry, loop 0, loop 1, ...], unchecked callees included. */
function segmentCosts(plan: FunctionPlan, siteCost: number[], unchecked: boolean[]): number[] {
  const costs = [plan.entryCost, ...plan.loopCost];
  for (let i = 0; i < plan.callTarget.length; i++) {
    const callee = plan.callTarget[i];
    if (unchecked[callee]) costs[plan.callSegment[i]] += siteCost[callee];
  }
  return costs;
}

/**
 * Which defined functions go without their own check, and what a direct call of each costs its caller.
 * Callees are decided before callers (strongly connected components come out of Tarjan's algorithm
 * callees first); a function in a cycle, or called other than directly, keeps its check.
 */
function chooseUnchecked(plans: FunctionPlan[], referenced: Set<number>, importedFunctions: number): { unchecked: boolean[]; siteCost: number[] } {
  const n = plans.length;
  const unchecked = new Array<boolean>(n).fill(false);
  const siteCost = new Array<number>(n).fill(0);
  for (const component of stronglyConnected(plans)) {
    if (component.length !== 1) continue;
    const f = component[0];
    const plan = plans[f];
    if (referenced.has(f + importedFunctions) || plan.callTarget.includes(f)) continue;
    const cost = segmentCosts(plan, siteCost, unchecked)[0];
    if (cost <= UNCHECKED_MAX_COST) {
      unchecked[f] = true;
      siteCost[f] = cost;
    }
  }
  return { unchecked, siteCost };
}

/** Tarjan's strongly connected components of the direct-call graph, iteratively (modules have tens of thousands of functions). */
function stronglyConnected(plans: FunctionPlan[]): number[][] {
  const n = plans.length;
  const index = new Int32Array(n).fill(-1);
  const low = new Int32Array(n);
  const onStack = new Uint8Array(n);
  const stack: number[] = [];
  const out: number[][] = [];
  let next = 0;
  const work: Array<[node: number, edge: number]> = [];
  for (let root = 0; root < n; root++) {
    if (index[root] !== -1) continue;
    work.push([root, 0]);
    while (work.length > 0) {
      const top = work[work.length - 1];
      const [v, edge] = top;
      if (edge === 0 && index[v] === -1) {
        index[v] = low[v] = next++;
        stack.push(v);
        onStack[v] = 1;
      }
      const targets = plans[v].callTarget;
      if (edge < targets.length) {
        top[1]++;
        const w = targets[edge];
        if (index[w] === -1) work.push([w, 0]);
        else if (onStack[w]) low[v] = Math.min(low[v], index[w]);
        continue;
      }
      work.pop();
      if (work.length > 0) {
        const parent = work[work.length - 1][0];
        low[parent] = Math.min(low[parent], low[v]);
      }
      if (low[v] === index[v]) {
        const component: number[] = [];
        let w: number;
        do {
          w = stack.pop()!;
          onStack[w] = 0;
          component.push(w);
        } while (w !== v);
        out.push(component);
      }
    }
  }
  return out;
}

/** Functions named by element segments (as indices or ref.func expressions). */
function collectElementFunctions(bytes: Uint8Array, section: Section, into: Set<number>): void {
  const r = new ByteReader(bytes, section.start, section.end);
  const count = r.u32();
  const ins: Instruction = { op: Op.Plain, index: 0, bulkShift: 0 };
  const constExpr = () => {
    for (;;) {
      readInstruction(r, ins);
      if (ins.op === Op.RefFunc) into.add(ins.index);
      if (ins.op === Op.End) return;
    }
  };
  for (let i = 0; i < count; i++) {
    const flags = r.u32();
    if (flags > 7) throw new MeteringError(`element segment ${i} has unknown flags ${flags}`);
    if (flags === 2 || flags === 6) r.u32(); // table index
    if ((flags & 1) === 0) constExpr(); // active: offset
    const usesExpressions = (flags & 4) !== 0;
    if (flags !== 0 && flags !== 4) {
      // elemkind (a byte) or reftype
      if (usesExpressions) skipValueType(r);
      else r.u8();
    }
    const items = r.u32();
    for (let k = 0; k < items; k++) {
      if (usesExpressions) constExpr();
      else into.add(r.u32());
    }
  }
}

/** ref.func in global initializers. */
function collectGlobalFunctions(bytes: Uint8Array, section: Section, into: Set<number>): void {
  const r = new ByteReader(bytes, section.start, section.end);
  const count = r.u32();
  const ins: Instruction = { op: Op.Plain, index: 0, bulkShift: 0 };
  for (let i = 0; i < count; i++) {
    skipValueType(r);
    r.u8();
    for (;;) {
      readInstruction(r, ins);
      if (ins.op === Op.RefFunc) into.add(ins.index);
      if (ins.op === Op.End) break;
    }
  }
}
