// The PipelineRun gate: on CREATE, hold a run that a policy manages (spec.status: PipelineRunPending)
// until its placeholder is scheduled. Pure: it answers from the policies it is given (the informer
// cache), never from the API.

import {
  GATED_ANNOTATION,
  MANAGED_LABEL,
  MODE_ANNOTATION,
  PENDING_STATUS,
  POLICY_ANNOTATION,
} from "../api/constants.js";
import { resolvePolicy } from "../api/resolve.js";
import type { AffinityPolicy, AffinityPolicySpec, PipelineRun } from "../api/types.js";
import type { AdmissionDecision, JsonPatchOp } from "./admission.js";
import { pointer, setMetadataEntries } from "./admission.js";

/** Recorded in the policy annotation when the operator's cluster default applied. */
export const CLUSTER_DEFAULT_POLICY = "(cluster-default)";

export function gatePipelineRun(
  run: PipelineRun,
  policiesInNamespace: readonly AffinityPolicy[],
  clusterDefault?: AffinityPolicySpec,
): AdmissionDecision {
  const resolved = resolvePolicy(run, policiesInNamespace, clusterDefault);
  if (!resolved.spec || resolved.spec.mode === "disabled") {
    // Tekton copies run labels onto pods, so our label must only ever come from us (a run copied with
    // `kubectl get -o yaml` carries it): drop it from runs we do not manage.
    if (run.metadata.labels?.[MANAGED_LABEL] === undefined) return { allowed: true };
    return {
      allowed: true,
      patch: [{ op: "remove", path: pointer("metadata", "labels", MANAGED_LABEL) }],
      warnings: [
        `tekton-affinity: removed label ${MANAGED_LABEL}: no AffinityPolicy manages this PipelineRun`,
      ],
    };
  }

  const policyName = resolved.policy?.metadata.name ?? CLUSTER_DEFAULT_POLICY;
  const userPended = run.spec.status === PENDING_STATUS;
  const patch: JsonPatchOp[] = [
    ...setMetadataEntries(run.metadata, "labels", { [MANAGED_LABEL]: "true" }),
    ...setMetadataEntries(run.metadata, "annotations", {
      [MODE_ANNOTATION]: resolved.spec.mode,
      [POLICY_ANNOTATION]: policyName,
      // Only a gate we set is ours to clear; a run the user pended stays pending until they say so.
      ...(userPended ? {} : { [GATED_ANNOTATION]: "true" }),
    }),
  ];
  if (!userPended) patch.push({ op: "add", path: "/spec/status", value: PENDING_STATUS });
  return { allowed: true, patch };
}
