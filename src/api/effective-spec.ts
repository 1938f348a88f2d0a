// The policy spec in force for a managed run: the mode recorded when the run was gated (a run never
// changes mode mid-flight), and the coscheduledClaims recorded on a run that carries its placement in
// workspaces mode (its task pods follow those claims' placeholders), with the rest from its policy as it is now in the cache, within the
// operator's bounds.

import {
  CLUSTER_DEFAULT_POLICY,
  COSCHEDULED_CLAIMS_ANNOTATION,
  MODE_ANNOTATION,
  POLICY_ANNOTATION,
} from "./constants.js";
import { boundedSpec, DEFAULT_TENANCY_LIMITS, type TenancyLimits } from "./tenancy.js";
import type { AffinityPolicy, AffinityPolicySpec, Mode, PipelineRun } from "./types.js";

export function effectiveSpec(
  run: PipelineRun,
  findPolicy: (namespace: string, name: string) => AffinityPolicy | undefined,
  clusterDefault?: AffinityPolicySpec,
  limits: TenancyLimits = DEFAULT_TENANCY_LIMITS,
): AffinityPolicySpec | undefined {
  const mode = run.metadata.annotations?.[MODE_ANNOTATION] as Mode | undefined;
  const policyName = run.metadata.annotations?.[POLICY_ANNOTATION];
  if (!mode || !policyName) return undefined;
  const source =
    policyName === CLUSTER_DEFAULT_POLICY
      ? clusterDefault
      : findPolicy(run.metadata.namespace, policyName)?.spec;
  const recorded = run.metadata.annotations?.[COSCHEDULED_CLAIMS_ANNOTATION];
  const coscheduledClaims: Pick<AffinityPolicySpec, "coscheduledClaims"> =
    recorded === "All" || recorded === "SingleNode" ? { coscheduledClaims: recorded } : {};
  // The policy may have been deleted since: keep the recorded mode with default settings.
  return boundedSpec({ ...(source ?? {}), mode, ...coscheduledClaims }, limits);
}
