// The PipelineRun gate: on CREATE, hold a run that a policy manages (spec.status: PipelineRunPending)
// until its placeholder is scheduled. Pure: it answers from the policies it is given (the informer
// cache), never from the API.
//
// Every label and annotation under affinity.tekton.dev/ is the controller's own mark. A user may not set
// one: a run copied with `kubectl get -o yaml | kubectl create -f -` carries the marks of the original
// (managed, gated, placed-on, cleaned-up, ...), and a run that claimed "cleaned-up" or "placed-on" would
// skip our work. So on CREATE the gate drops every such key the user sent and writes its own.

import {
  CLUSTER_DEFAULT_POLICY,
  COSCHEDULED_CLAIMS_ANNOTATION,
  GATED_ANNOTATION,
  GATED_AT_ANNOTATION,
  GROUP,
  MANAGED_LABEL,
  MODE_ANNOTATION,
  PENDING_STATUS,
  PLACEMENT_LABEL,
  POLICY_ANNOTATION,
} from "../api/constants.js";
import { resolvePolicy } from "../api/resolve.js";
import { boundedSpec, DEFAULT_TENANCY_LIMITS, type TenancyLimits } from "../api/tenancy.js";
import type { AffinityPolicy, AffinityPolicySpec, PipelineRun } from "../api/types.js";
import {
  claimConflict,
  conflictMessage,
  DEFAULT_COSCHEDULED_CLAIMS,
  planPlaceholders,
} from "../placement/plan.js";
import {
  carriesPlacement,
  newPlacementToken,
  placementCombines,
  placementPatch,
  placementTerm,
  placementWritable,
  workspaceTaskTerms,
} from "../placement/run-placement.js";
import type { AdmissionDecision, JsonPatchOp } from "./admission.js";
import { pointer, setMetadataEntries } from "./admission.js";

const OWNED_PREFIX = `${GROUP}/`;

function ownedKeys(map: Record<string, string> | undefined): string[] {
  return Object.keys(map ?? {}).filter((k) => k.startsWith(OWNED_PREFIX));
}

function withoutOwned(map: Record<string, string> | undefined): Record<string, string> | undefined {
  if (!map) return map;
  return Object.fromEntries(Object.entries(map).filter(([k]) => !k.startsWith(OWNED_PREFIX)));
}

export interface GateOptions {
  /** The operator's bounds, applied to the policy as the reconciler applies them. */
  limits?: TenancyLimits;
  /** Draws the run's placement token (run-placement.ts); a fixed one in tests. */
  newToken?: () => string;
}

/**
 * Ops that make the keys under our prefix in `meta`'s labels and annotations exactly `desired` (every
 * other key untouched), and the keys that differed (`present`: the object had the key).
 */
function convergeMarks(
  meta: PipelineRun["metadata"],
  desired: Record<"labels" | "annotations", Record<string, string>>,
): { patch: JsonPatchOp[]; differing: { key: string; present: boolean }[] } {
  const patch: JsonPatchOp[] = [];
  const differing: { key: string; present: boolean }[] = [];
  for (const field of ["labels", "annotations"] as const) {
    const current = meta[field] ?? {};
    const want = desired[field];
    const set: Record<string, string> = {};
    for (const key of new Set([...ownedKeys(current), ...Object.keys(want)])) {
      if (current[key] === want[key]) continue;
      differing.push({ key, present: key in current });
      if (want[key] === undefined) patch.push({ op: "remove", path: pointer("metadata", field, key) });
      else set[key] = want[key];
    }
    // Removing every entry of a map leaves it in place ({}), so setMetadataEntries adds into it.
    if (Object.keys(set).length) patch.push(...setMetadataEntries(meta, field, set));
  }
  return { patch, differing };
}

/**
 * @param tektonConflict set (the reason) while Tekton's own affinity assistant is on: then no run is
 * gated, because its pods would get two competing anchors (Tekton's assistant and our placeholder).
 */
export function gatePipelineRun(
  run: PipelineRun,
  policiesInNamespace: readonly AffinityPolicy[],
  clusterDefault?: AffinityPolicySpec,
  tektonConflict?: string,
  options: GateOptions = {},
): AdmissionDecision {
  // A copy of a run we gated: its Pending came from us, not from the user.
  const copiedGate =
    run.spec.status === PENDING_STATUS && run.metadata.annotations?.[GATED_ANNOTATION] === "true";
  // Resolve on the labels the user may set: a selector cannot be satisfied by our marks.
  const clean: PipelineRun = {
    ...run,
    metadata: { ...run.metadata, labels: withoutOwned(run.metadata.labels) },
  };
  const resolved = resolvePolicy(clean, policiesInNamespace, clusterDefault);
  const selected = resolved.spec !== undefined && resolved.spec.mode !== "disabled";
  const managed = selected && !tektonConflict;

  const spec = managed ? boundedSpec(resolved.spec!, options.limits ?? DEFAULT_TENANCY_LIMITS) : undefined;
  // The run carries its placement (run-placement.ts) when its pod templates can say it.
  let token =
    spec && carriesPlacement(spec) && placementWritable(run) && placementCombines(run)
      ? (options.newToken ?? newPlacementToken)()
      : undefined;
  const which = spec?.coscheduledClaims ?? DEFAULT_COSCHEDULED_CLAIMS;
  // Workspaces mode: a term per task, where the run says which claims each task binds.
  const taskTerms =
    token && spec?.mode === "workspaces"
      ? workspaceTaskTerms(run, which, token, spec.topologyKey)
      : undefined;
  if (spec?.mode === "workspaces" && !taskTerms) token = undefined;
  const ours: Record<"labels" | "annotations", Record<string, string>> = {
    labels: managed ? { [MANAGED_LABEL]: "true", ...(token ? { [PLACEMENT_LABEL]: token } : {}) } : {},
    annotations: {},
  };
  const userPended = run.spec.status === PENDING_STATUS && !copiedGate;
  if (managed) {
    ours.annotations = {
      [MODE_ANNOTATION]: resolved.spec!.mode,
      [POLICY_ANNOTATION]: resolved.policy?.metadata.name ?? CLUSTER_DEFAULT_POLICY,
      // Only a gate we set is ours to clear; a run the user pended stays pending until they say so.
      ...(userPended ? {} : { [GATED_ANNOTATION]: "true" }),
      // Which claims the task terms follow: the placeholders must stay those, whatever the policy says later.
      ...(taskTerms ? { [COSCHEDULED_CLAIMS_ANNOTATION]: which } : {}),
    };
  }

  const marks = convergeMarks(run.metadata, ours);
  const patch: JsonPatchOp[] = [...marks.patch];
  // The marks the user sent that are not what we write.
  const removed = marks.differing.filter((d) => d.present).map((d) => d.key);
  // Our term in, or any stale one of ours out (a copy of a run we placed carries it): a term naming
  // another run's placeholder would keep this run's pods from ever being scheduled.
  if (placementWritable(run))
    patch.push(
      ...placementPatch(
        run,
        token && !taskTerms ? placementTerm(token, spec?.topologyKey) : undefined,
        taskTerms,
      ),
    );
  if (managed && !userPended && run.spec.status !== PENDING_STATUS)
    patch.push({ op: "add", path: "/spec/status", value: PENDING_STATUS });
  // A copy of a gated run that is no longer ours to manage starts as any new run would.
  if (!managed && copiedGate) patch.push({ op: "remove", path: "/spec/status" });

  const warnings: string[] = [];
  if (selected && tektonConflict)
    warnings.push(`tekton-affinity: not co-scheduling this PipelineRun: ${tektonConflict}`);
  // A task that binds two claims held apart, where the run itself says so: nothing will be created for
  // it, and the reconciler fails it (or starts it uncoscheduled) at once. Only template claims, whose
  // access modes are in the run: a user PVC's are read by the reconciler.
  const conflict =
    spec?.mode === "workspaces"
      ? claimConflict(
          run,
          "workspaces",
          planPlaceholders(run, "workspaces", {}, which).filter((p) => p.claims.every((c) => c.template)),
        )
      : undefined;
  if (conflict)
    warnings.push(
      `tekton-affinity: ${conflictMessage(conflict)}. This PipelineRun will ${(spec?.onMaxWait ?? "Fail") === "Release" ? "start without co-scheduling" : "fail"} at once`,
    );
  if (removed.length)
    warnings.push(
      `tekton-affinity: dropped ${[...new Set(removed)].join(", ")}: labels and annotations under ${OWNED_PREFIX} are set by the controller only${managed ? "" : " (no AffinityPolicy manages this PipelineRun)"}`,
    );
  if (patch.length === 0 && warnings.length === 0) return { allowed: true };
  return {
    allowed: true,
    ...(patch.length ? { patch } : {}),
    ...(warnings.length ? { warnings } : {}),
  };
}

/**
 * Our marks on UPDATE. Only runs that carry, or carried, our managed label reach it (objectSelector; the
 * apiserver matches an UPDATE on the old object too). An update by anyone but the controller:
 *  - keeps every label and annotation under affinity.tekton.dev/ as it was: removing the managed label
 *    would drop the run out of our watch (its maxWait would never fire, its placeholder would stay), and
 *    a forged `cleaned-up` or `placed-on` would skip our work;
 *  - that releases a run its creator (a user, or a queueing controller such as Kueue) made Pending hands
 *    it to the gate: it stays Pending, now gated by us, until its placeholder is scheduled, and its
 *    maxWait counts from now (`gated-at`). Until that release the run got nothing from us.
 * Everything else in the update goes through.
 */
export function guardMarks(
  run: PipelineRun,
  old: PipelineRun | undefined,
  byController: boolean,
  now: Date = new Date(),
): AdmissionDecision {
  if (byController || !old) return { allowed: true };
  const takeOver =
    old.metadata.labels?.[MANAGED_LABEL] === "true" &&
    old.spec.status === PENDING_STATUS &&
    old.metadata.annotations?.[GATED_ANNOTATION] !== "true" &&
    run.spec.status !== PENDING_STATUS;
  const desired = {
    labels: Object.fromEntries(ownedKeys(old.metadata.labels).map((k) => [k, old.metadata.labels![k]!])),
    annotations: {
      ...Object.fromEntries(
        ownedKeys(old.metadata.annotations).map((k) => [k, old.metadata.annotations![k]!]),
      ),
      ...(takeOver ? { [GATED_ANNOTATION]: "true", [GATED_AT_ANNOTATION]: now.toISOString() } : {}),
    } as Record<string, string>,
  };
  const { patch, differing } = convergeMarks(run.metadata, desired);
  // The marks the update changed (not those the takeover adds).
  const changed = differing
    .map((d) => d.key)
    .filter((k) => !takeOver || (k !== GATED_ANNOTATION && k !== GATED_AT_ANNOTATION));
  const warnings: string[] = [];
  if (changed.length)
    warnings.push(
      `tekton-affinity: kept ${changed.join(", ")} as they were: labels and annotations under ${OWNED_PREFIX} are set by the controller only`,
    );
  if (takeOver) {
    patch.push({ op: "add", path: "/spec/status", value: PENDING_STATUS });
    warnings.push(
      "tekton-affinity: this PipelineRun stays Pending until its placeholder is scheduled; it then starts by itself (see its affinity.tekton.dev/waiting-for annotation while it waits)",
    );
  }
  if (!patch.length) return { allowed: true };
  return { allowed: true, patch, warnings };
}
