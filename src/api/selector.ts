// Label selector matching with exactly Kubernetes' semantics (k8s.io/apimachinery labels):
// - matchLabels k: v        label k present with value v
// - In [v...]               label present and its value is one of v
// - NotIn [v...]            label absent, or its value is none of v
// - Exists / DoesNotExist   label present / absent
// All requirements are ANDed. An absent or empty selector matches everything (for a policy that
// means "every PipelineRun in the namespace"). A malformed requirement (In/NotIn without values,
// Exists/DoesNotExist with values, unknown operator) makes Kubernetes reject the selector, so here it
// matches nothing; validatePolicy reports it.

import type { LabelSelector, LabelSelectorRequirement } from "./types.js";

export type Labels = Readonly<Record<string, string | undefined>> | undefined;

/** matchLabels and matchExpressions as one list of requirements. */
export function selectorRequirements(selector: LabelSelector | undefined): LabelSelectorRequirement[] {
  if (!selector) return [];
  const out: LabelSelectorRequirement[] = [];
  for (const [key, value] of Object.entries(selector.matchLabels ?? {})) {
    if (value !== undefined) out.push({ key, operator: "In", values: [value] });
  }
  out.push(...(selector.matchExpressions ?? []));
  return out;
}

/** Whether a requirement is well formed, as Kubernetes would accept it. */
export function requirementWellFormed(req: LabelSelectorRequirement): boolean {
  const n = req.values?.length ?? 0;
  switch (req.operator) {
    case "In":
    case "NotIn":
      return n > 0;
    case "Exists":
    case "DoesNotExist":
      return n === 0;
    default:
      return false;
  }
}

export function matchesRequirement(req: LabelSelectorRequirement, labels: Labels): boolean {
  if (!requirementWellFormed(req)) return false;
  const has = labels !== undefined && Object.hasOwn(labels, req.key) && labels[req.key] !== undefined;
  const value = has ? labels?.[req.key] : undefined;
  switch (req.operator) {
    case "In":
      return has && (req.values ?? []).includes(value as string);
    case "NotIn":
      return !has || !(req.values ?? []).includes(value as string);
    case "Exists":
      return has;
    case "DoesNotExist":
      return !has;
  }
}

export function matchesLabelSelector(selector: LabelSelector | undefined, labels: Labels): boolean {
  return selectorRequirements(selector).every((req) => matchesRequirement(req, labels));
}

/** How specific a selector is: its number of requirements (matchLabels entries plus
 * matchExpressions). 0 for an absent or empty selector, which selects everything. */
export function selectorSpecificity(selector: LabelSelector | undefined): number {
  return selectorRequirements(selector).length;
}

/** Whether some label set satisfies every given requirement. Exact: requirements on different keys
 * are independent, and per key we check exists-vs-absent and whether any value is left. */
export function requirementsSatisfiable(reqs: LabelSelectorRequirement[]): boolean {
  const byKey = new Map<string, LabelSelectorRequirement[]>();
  for (const req of reqs) {
    if (!requirementWellFormed(req)) return false;
    byKey.set(req.key, [...(byKey.get(req.key) ?? []), req]);
  }
  for (const keyReqs of byKey.values()) {
    let mustExist = false;
    let mustNotExist = false;
    let allowed: Set<string> | undefined;
    const forbidden = new Set<string>();
    for (const req of keyReqs) {
      const values = req.values ?? [];
      if (req.operator === "In") {
        mustExist = true;
        allowed = new Set(allowed ? values.filter((v) => allowed?.has(v)) : values);
      } else if (req.operator === "NotIn") {
        for (const v of values) forbidden.add(v);
      } else if (req.operator === "Exists") {
        mustExist = true;
      } else {
        mustNotExist = true;
      }
    }
    if (mustExist && mustNotExist) return false;
    if (allowed && ![...allowed].some((v) => !forbidden.has(v))) return false;
  }
  return true;
}

/** Whether one PipelineRun could be selected by both selectors. */
export function selectorsOverlap(a: LabelSelector | undefined, b: LabelSelector | undefined): boolean {
  return requirementsSatisfiable([...selectorRequirements(a), ...selectorRequirements(b)]);
}
