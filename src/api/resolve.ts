// Which AffinityPolicy applies to a PipelineRun.
//
// Rule (also spelled out in every ResolvedPolicy.reason):
//   1. Only policies in the run's namespace count; policies being deleted
//      (metadata.deletionTimestamp set) are ignored.
//   2. Of the policies whose pipelineRunSelector matches the run's labels (absent/empty selector
//      matches every run), the most specific selector wins: the one with the most requirements
//      (matchLabels entries + matchExpressions).
//   3. Ties go to the oldest policy (metadata.creationTimestamp), then to the lexically smallest
//      metadata.name. The outcome is deterministic and the same on every replica.
//   4. No policy matches: the cluster default spec if the operator configured one, else none (the
//      run is left alone).

import { matchesLabelSelector, selectorSpecificity, selectorsOverlap } from "./selector.js";
import type { AffinityPolicy, AffinityPolicySpec, PipelineRun } from "./types.js";

export const RESOLUTION_RULE =
  "the policy with the most specific pipelineRunSelector wins, ties go to the oldest, then to the lexically smallest name";

export interface ResolvedPolicy {
  policy: AffinityPolicy | undefined;
  spec: AffinityPolicySpec | undefined;
  source: "policy" | "cluster-default" | "none";
  reason: string;
  /** Other policies that matched the run but lost to `policy`, best first. */
  losers: AffinityPolicy[];
}

function creationMillis(p: AffinityPolicy): number {
  const t = p.metadata.creationTimestamp ? Date.parse(p.metadata.creationTimestamp) : Number.NaN;
  // A policy without a (parseable) timestamp has not been persisted yet: treat it as the newest.
  return Number.isNaN(t) ? Number.POSITIVE_INFINITY : t;
}

/** Negative when `a` beats `b` under the rule above. */
export function comparePolicies(a: AffinityPolicy, b: AffinityPolicy): number {
  const spec =
    selectorSpecificity(b.spec.pipelineRunSelector) - selectorSpecificity(a.spec.pipelineRunSelector);
  if (spec !== 0) return spec;
  const ta = creationMillis(a);
  const tb = creationMillis(b);
  if (ta !== tb) return ta < tb ? -1 : 1;
  return a.metadata.name < b.metadata.name ? -1 : a.metadata.name > b.metadata.name ? 1 : 0;
}

function whyWins(winner: AffinityPolicy, loser: AffinityPolicy): string {
  const sw = selectorSpecificity(winner.spec.pipelineRunSelector);
  const sl = selectorSpecificity(loser.spec.pipelineRunSelector);
  if (sw !== sl) return `its selector has ${sw} requirement(s) against ${sl}`;
  if (creationMillis(winner) !== creationMillis(loser)) return "it is older";
  return "its name sorts first";
}

function isDeleting(p: AffinityPolicy): boolean {
  return p.metadata.deletionTimestamp !== undefined && p.metadata.deletionTimestamp !== null;
}

export function resolvePolicy(
  run: PipelineRun,
  policiesInNamespace: readonly AffinityPolicy[],
  clusterDefault?: AffinityPolicySpec,
): ResolvedPolicy {
  const ns = run.metadata.namespace;
  const matching = policiesInNamespace
    .filter((p) => p.metadata.namespace === ns && !isDeleting(p))
    .filter((p) => matchesLabelSelector(p.spec.pipelineRunSelector, run.metadata.labels))
    .sort(comparePolicies);
  const [winner, ...losers] = matching;
  if (winner) {
    let reason = `AffinityPolicy ${ns}/${winner.metadata.name} selects this PipelineRun`;
    if (losers.length > 0) {
      const names = losers.map((l) => l.metadata.name).join(", ");
      reason += `; it wins over ${names} because ${whyWins(winner, losers[0]!)} (${RESOLUTION_RULE})`;
    }
    return { policy: winner, spec: winner.spec, source: "policy", reason, losers };
  }
  if (clusterDefault) {
    return {
      policy: undefined,
      spec: clusterDefault,
      source: "cluster-default",
      reason: `no AffinityPolicy in namespace ${ns} selects this PipelineRun; using the cluster default (mode ${clusterDefault.mode})`,
      losers: [],
    };
  }
  return {
    policy: undefined,
    spec: undefined,
    source: "none",
    reason: `no AffinityPolicy in namespace ${ns} selects this PipelineRun and no cluster default is configured; leaving it alone`,
    losers: [],
  };
}

export interface Overlap {
  /** A policy whose selector can select some of the same runs. */
  other: AffinityPolicy;
  /** Which of the two wins for runs both select. */
  winner: AffinityPolicy;
}

export interface OverlapReport {
  policy: AffinityPolicy;
  overlaps: Overlap[];
  /** Human-readable summary for the Overlapping condition; empty when there are no overlaps. */
  message: string;
}

/** The other (not deleting) policies of `policy`'s namespace that could select the same PipelineRuns,
 * and who wins each pair: one pass over the namespace's policies, O(P). Two selectors overlap unless
 * they provably conflict (some key is required by one and forbidden by the other, or no label value
 * satisfies both). */
export function overlapReport(policy: AffinityPolicy, policies: readonly AffinityPolicy[]): OverlapReport {
  const overlaps: Overlap[] = policies
    .filter(
      (other) =>
        !isDeleting(other) &&
        other !== policy &&
        other.metadata.namespace === policy.metadata.namespace &&
        !(other.metadata.name === policy.metadata.name) &&
        selectorsOverlap(policy.spec.pipelineRunSelector, other.spec.pipelineRunSelector),
    )
    .sort(comparePolicies)
    .map((other) => ({ other, winner: comparePolicies(policy, other) <= 0 ? policy : other }));
  const lost = overlaps.filter((o) => o.winner !== policy).map((o) => o.other.metadata.name);
  const won = overlaps.filter((o) => o.winner === policy).map((o) => o.other.metadata.name);
  const parts: string[] = [];
  if (lost.length > 0) parts.push(`loses to ${lost.join(", ")} for runs both select`);
  if (won.length > 0) parts.push(`wins over ${won.join(", ")} for runs both select`);
  const message =
    parts.length === 0
      ? ""
      : `selector overlaps other policies: ${parts.join("; ")} (${RESOLUTION_RULE}); make the selectors disjoint or more specific to control which applies`;
  return { policy, overlaps, message };
}

/** overlapReport for every (not deleting) policy. */
export function findOverlaps(policies: readonly AffinityPolicy[]): OverlapReport[] {
  return policies.filter((p) => !isDeleting(p)).map((policy) => overlapReport(policy, policies));
}
