// What an AffinityPolicy reconcile does: pure decisions, unit-tested without a cluster
// (test/unit/policy-decisions.test.ts).
//
// affinitypolicy.ts gathers what the caches say, Tekton's coschedule flag and whether what the policy
// needs exists (its ServiceAccount; the reservations' PriorityClass) into a PolicyObservation, asks decidePolicy for a list of PolicyActions, and
// performs them in order. Nothing here does I/O or reads the clock: the time is `now` in the observation.
//
//   Ready        False when the spec is invalid, its ServiceAccount or (reserve: LargestTask) the
//                reservations' PriorityClass is missing, or Tekton's own affinity assistant would fight
//                ours; True otherwise.
//   Overlapping  True when another policy can select the same runs; says which one wins.
//   activeRuns   runs this policy manages that have not finished.

import { isDeepStrictEqual } from "node:util";
import { RESERVATION_PRIORITY_CLASS } from "../api/constants.js";
import { overlapReport } from "../api/resolve.js";
import type { TenancyLimits } from "../api/tenancy.js";
import { policyErrors } from "../api/tenancy.js";
import type { AffinityPolicy, AffinityPolicyStatus, Condition } from "../api/types.js";

// ---- what a reconcile observed ----

export interface PolicyObservation {
  /** The policy as the cache holds it (its resourceVersion fences the status write). */
  policy: AffinityPolicy;
  /** The policies of its namespace as the cache holds them (it may be among them): for Overlapping. */
  policies: readonly AffinityPolicy[];
  /** How many runs annotated with this policy's name have not finished (ActiveRunIndex, kept from the
   * run watch: the reconcile does not count them). */
  activeRuns: number;
  /** Tekton's feature-flags coschedule value (TektonFlags.coschedule()); undefined when Tekton's
   * feature-flags ConfigMap does not exist. */
  coschedule?: string;
  /** What to set to turn Tekton's assistant off, for its release, and how its flags were read when that
   * is not plain (tekton-flags.ts tektonAssistant). */
  tektonFix?: string;
  tektonNote?: string;
  /** Whether spec.placeholder.serviceAccountName exists in the namespace; undefined when the policy
   * names none (or it was not looked up: then it is not reported missing). */
  serviceAccountExists?: boolean;
  /** With reserve: LargestTask, whether the reservations' PriorityClass exists; undefined otherwise. */
  reservationClassExists?: boolean;
  /** The value of the namespace's isolation-group label (limits.isolationGroupLabel), if any. */
  isolationGroup?: string;
  limits: TenancyLimits;
  /** Milliseconds since the epoch: the lastTransitionTime of a condition whose status changes. */
  now: number;
}

// ---- what to do about it ----

/** Performed in order by AffinityPolicyReconciler; a failing step ends the reconcile, and the job is
 * retried from fresh state. */
export type PolicyAction =
  /** An event on the policy; the reconcile does not wait for it. */
  | { type: "event"; eventType: "Normal" | "Warning"; reason: string; message: string }
  /** Merge-patch the status subresource, fenced by the policy's resourceVersion as read (a stale view
   * gets 409 and the job retries). */
  | { type: "writeStatus"; status: AffinityPolicyStatus; resourceVersion: string | undefined };

export type PolicyActionOf<T extends PolicyAction["type"]> = Extract<PolicyAction, { type: T }>;

/**
 * Nothing when the status the policy should have is the one it has (lastTransitionTime aside).
 * Otherwise its new status, preceded by a Warning event when Ready turns False, or stays False for
 * another reason.
 */
export function decidePolicy(obs: PolicyObservation): PolicyAction[] {
  const { policy } = obs;
  const status = desiredStatus(obs);
  if (sameStatus(status, policy.status)) return [];
  const actions: PolicyAction[] = [];
  const notReady = notReadyEvent(policy.status, status);
  if (notReady) actions.push(notReady);
  actions.push({ type: "writeStatus", status, resourceVersion: policy.metadata.resourceVersion });
  return actions;
}

/** The status the policy should have, keeping the lastTransitionTime of each condition whose status
 * did not change. */
export function desiredStatus(obs: PolicyObservation): AffinityPolicyStatus {
  const { policy } = obs;
  const generation = policy.metadata.generation;
  return {
    observedGeneration: generation,
    activeRuns: obs.activeRuns,
    conditions: withTransitionTimes(
      [readyCondition(obs), overlappingCondition(obs)],
      policy.status?.conditions,
      obs.now,
    ),
  };
}

type NewCondition = Omit<Condition, "lastTransitionTime">;

function condition(
  type: string,
  status: Condition["status"],
  reason: string,
  message: string,
  generation?: number,
): NewCondition {
  return { type, status, reason, message, observedGeneration: generation };
}

function readyCondition(obs: PolicyObservation): NewCondition {
  const { policy, coschedule, limits } = obs;
  const ns = policy.metadata.namespace;
  const generation = policy.metadata.generation;
  const errors = policyErrors(policy, limits);
  const serviceAccount = policy.spec.placeholder?.serviceAccountName;
  const missingServiceAccount = serviceAccount !== undefined && obs.serviceAccountExists === false;
  if (errors.length) {
    return condition(
      "Ready",
      "False",
      "InvalidSpec",
      errors.map((e) => `${e.field}: ${e.message}`).join("; "),
      generation,
    );
  }
  if (missingServiceAccount) {
    return condition(
      "Ready",
      "False",
      "ServiceAccountNotFound",
      `spec.placeholder.serviceAccountName "${serviceAccount}" does not exist in namespace ${ns}, so placeholder pods cannot be created and runs wait at the gate; create the ServiceAccount or change the field`,
      generation,
    );
  }
  if (obs.reservationClassExists === false) {
    return condition(
      "Ready",
      "False",
      "ReservationPriorityClassNotFound",
      `spec.reserve is LargestTask, but PriorityClass ${RESERVATION_PRIORITY_CLASS} does not exist, so no reservation can be created and runs wait at the gate; install it (release/release.yaml and deploy/ ship it) or remove spec.reserve`,
      generation,
    );
  }
  if (coschedule && coschedule !== "disabled" && policy.spec.mode !== "disabled") {
    return condition(
      "Ready",
      "False",
      "TektonAffinityAssistantEnabled",
      `Tekton's own affinity assistant is on (coschedule mode "${coschedule}"${obs.tektonNote ? `: ${obs.tektonNote}` : ""}) and would co-schedule these runs too; ${obs.tektonFix ?? 'set coschedule: "disabled" in the feature-flags ConfigMap of Tekton\'s namespace'} (tekton-affinity migrate prints the equivalent policies)`,
      generation,
    );
  }
  return condition(
    "Ready",
    "True",
    "Active",
    `mode ${policy.spec.mode} applies to the PipelineRuns this policy selects${isolationNote(obs)}`,
    generation,
  );
}

/** Cluster-scope isolation reaches only the namespace's isolation group: say which, or that there is none. */
function isolationNote({ policy, isolationGroup, limits }: PolicyObservation): string {
  if (policy.spec.mode !== "isolate-pipelinerun" || (policy.spec.isolation?.scope ?? "cluster") !== "cluster")
    return "";
  const ns = policy.metadata.namespace;
  return isolationGroup
    ? `; isolation spans the namespaces of isolation group "${isolationGroup}"`
    : `; namespace ${ns} is in no isolation group, so its runs are isolated from this namespace's runs only (a cluster admin adds it to a group with the namespace label ${limits.isolationGroupLabel})`;
}

function overlappingCondition({ policy, policies }: PolicyObservation): NewCondition {
  const generation = policy.metadata.generation;
  const report = overlapReport(policy, policies);
  return report?.overlaps.length
    ? condition("Overlapping", "True", "SelectorsOverlap", report.message, generation)
    : condition(
        "Overlapping",
        "False",
        "NoOverlap",
        "no other AffinityPolicy in this namespace selects the same runs",
        generation,
      );
}

/** Keeps lastTransitionTime when a condition's status did not change; otherwise it is `now`. */
function withTransitionTimes(next: NewCondition[], previous: Condition[] = [], now: number): Condition[] {
  const at = new Date(now).toISOString();
  return next.map((c) => {
    const old = previous.find((p) => p.type === c.type);
    return { ...c, lastTransitionTime: old && old.status === c.status ? old.lastTransitionTime : at };
  });
}

/** A Warning event each time the policy's Ready condition turns False for a new reason. */
function notReadyEvent(
  before: AffinityPolicyStatus | undefined,
  next: AffinityPolicyStatus,
): PolicyActionOf<"event"> | undefined {
  const ready = readyOf(next);
  const was = readyOf(before);
  if (ready?.status !== "False") return undefined;
  if (was?.status === "False" && was.reason === ready.reason) return undefined;
  return { type: "event", eventType: "Warning", reason: ready.reason, message: ready.message };
}

export function readyOf(status: AffinityPolicyStatus | undefined): Condition | undefined {
  return status?.conditions?.find((c) => c.type === "Ready");
}

/**
 * Whether `a` says what `b` says, lastTransitionTime aside. `b` is the status as the apiserver returned
 * it, with its own key order (alphabetical) and without the fields we leave undefined, so conditions are
 * compared as JSON values (sameJson), not as JSON text: otherwise every reconcile would PATCH.
 */
export function sameStatus(a: AffinityPolicyStatus, b: AffinityPolicyStatus | undefined): boolean {
  if (!b || a.observedGeneration !== b.observedGeneration || a.activeRuns !== b.activeRuns) return false;
  const strip = (cs: Condition[] = []) => cs.map(({ lastTransitionTime: _, ...rest }) => rest);
  return sameJson(strip(a.conditions), strip(b.conditions));
}

/** Whether `a` and `b` are the same JSON value once sent: the order of object keys does not matter,
 * and a field whose value is undefined is the same as an absent one (JSON drops it). */
export function sameJson(a: unknown, b: unknown): boolean {
  return isDeepStrictEqual(asJson(a), asJson(b));
}

/** `value` without the object fields that JSON drops (undefined), with toJSON applied (Dates). */
function asJson(value: unknown): unknown {
  if (value === null || typeof value !== "object") return value;
  const json = (value as { toJSON?: () => unknown }).toJSON;
  if (typeof json === "function") return asJson(json.call(value));
  if (Array.isArray(value)) return value.map(asJson);
  return Object.fromEntries(
    Object.entries(value)
      .filter(([, v]) => v !== undefined)
      .map(([k, v]) => [k, asJson(v)]),
  );
}
