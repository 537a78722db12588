// Documents that pass their schemas but that translation cannot carry whole: a VirtualService whose
// faults need a match the fault filter cannot evaluate (regex, authority, queryParams, port), an
// AuthorizationPolicy rule with a `when` key the policy filter does not know. Validation refuses
// them (translationProblems), so nothing new of the kind is written; the orchestrator's snapshots
// take the offending part out of documents stored before (failSafeDocuments), in the direction that
// fails safe, so that one such resource never keeps the rest of a workload's config from it.

import { formatResource, isRecord, resourceRef, type AuthorizationPolicy, type ConfigDocument, type VirtualService } from '../documents.ts';
import { faultProblems } from './fault-filter.ts';
import { ruleProblems } from './policy-filter.ts';

/** A field translation cannot carry: a JSON pointer into the document, and why. */
export interface TranslationProblem {
  readonly path: string;
  readonly message: string;
}

/** Part of a resource left out of (or changed in) a workload's config, and what that means. */
export interface LeftOut {
  /** "AuthorizationPolicy default/deny-ratings" */
  readonly resource: string;
  /** JSON pointer to the offending field ("" for the whole resource). */
  readonly path: string;
  /** Why, and what the workload runs instead. */
  readonly message: string;
}

/**
 * What translation would refuse in one document that passed its schema; empty when it translates
 * whole. Documents of other kinds, or of unexpected shape, have none.
 */
export function translationProblems(value: unknown): TranslationProblem[] {
  if (!isRecord(value) || !isRecord(value.spec)) return [];
  if (value.kind === 'VirtualService') {
    return faultProblems(value as unknown as VirtualService).map((p) => ({ path: pointer(p.at), message: p.message }));
  }
  if (value.kind === 'AuthorizationPolicy') {
    const rules = (value as unknown as AuthorizationPolicy).spec.rules ?? [];
    return rules.flatMap((rule, i) => ruleProblems(rule).map((p) => ({ path: pointer(['spec', 'rules', i, ...p.at]), message: p.message })));
  }
  return [];
}

/**
 * The documents with what translation cannot carry taken out, failing safe:
 *   - a VirtualService keeps its routes and loses its faults (the fault filter fails open anyway);
 *   - an ALLOW or AUDIT rule that cannot be evaluated is left out (an ALLOW rule then allows
 *     nothing), and a DENY rule that cannot be evaluated matches every request (it denies all).
 * Istio's authorization builder fails closed the same way. Documents without problems are passed
 * on as they are (the same objects).
 */
export function failSafeDocuments(documents: readonly ConfigDocument[]): { documents: ConfigDocument[]; leftOut: LeftOut[] } {
  const leftOut: LeftOut[] = [];
  const out = documents.map((doc) => {
    const problems = translationProblems(doc.value);
    if (problems.length === 0) return doc;
    const ref = resourceRef(doc.value);
    const resource = ref ? formatResource(ref) : `${String((doc.value as { kind?: unknown }).kind)} (${doc.source.file}#${doc.source.index})`;
    const value = doc.value as Record<string, unknown> & { spec: Record<string, unknown> };
    if (value.kind === 'VirtualService') {
      for (const p of problems) leftOut.push({ resource, path: p.path, message: `${p.message}: the VirtualService's faults are left out (its routes still apply)` });
      const http = (value.spec.http as Record<string, unknown>[] | undefined) ?? [];
      return { source: doc.source, value: { ...value, spec: { ...value.spec, http: http.map(({ fault: _fault, ...route }) => route) } } };
    }
    // AuthorizationPolicy: each offending rule is dropped (ALLOW, AUDIT) or matches everything (DENY).
    const policy = value as unknown as AuthorizationPolicy;
    const deny = policy.spec.action === 'DENY';
    const bad = new Set(problems.map((p) => Number(p.path.split('/')[3])));
    for (const p of problems) {
      leftOut.push({
        resource,
        path: p.path,
        message: deny
          ? `${p.message}: the rule matches every request instead (a DENY rule that cannot be evaluated denies all)`
          : `${p.message}: the rule is left out (a rule that cannot be evaluated allows nothing)`,
      });
    }
    const rules = (policy.spec.rules ?? []).flatMap((rule, i) => (!bad.has(i) ? [rule] : deny ? [{}] : []));
    return { source: doc.source, value: { ...value, spec: { ...value.spec, rules } } };
  });
  return { documents: out, leftOut };
}

function pointer(segments: readonly (string | number)[]): string {
  return segments.map((s) => `/${String(s).replace(/~/g, '~0').replace(/\//g, '~1')}`).join('');
}
