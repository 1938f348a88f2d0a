// What a PipelineRun reconcile does: pure decisions, unit-tested without a cluster
// (test/unit/run-decisions.test.ts).
//
// pipelinerun.ts gathers what the informer caches say into a RunObservation, asks decideRun (and then
// decideGate) for a list of RunActions, and performs them in order. Nothing here does I/O or reads the
// clock: the time is `now` in the observation. What only the apiserver can answer stays in the
// executor and feeds back in as an argument: whether a create was refused (decideGate) and whether a
// volume is pinned to its node (pinnedNode, checked when an `evict` is performed). The access modes of
// the run's user PVCs are read before the plans are made (RunObservation.placeholders' claims).

import type {
  CoreV1Event,
  V1Node,
  V1PersistentVolume,
  V1PersistentVolumeClaim,
  V1Pod,
  V1StatefulSet,
} from "@kubernetes/client-node";
import {
  AUTO_CLEANUP_PVC_ANNOTATION,
  CLEANED_UP_ANNOTATION,
  EVICTED_AT_ANNOTATION,
  EVICTED_FROM_ANNOTATION,
  GATED_ANNOTATION,
  GATED_AT_ANNOTATION,
  MANAGED_LABEL,
  PENDING_STATUS,
  PLACEMENT_LABEL,
  RELEASED_UNCOSCHEDULED_ANNOTATION,
  RESERVED_FOR_ANNOTATION,
  TEMPLATE_HASH_ANNOTATION,
  WAITING_ANNOTATION,
} from "../api/constants.js";
import { effectivePlaceholderTemplate, type TektonDefaultTemplate } from "../api/placeholder-template.js";
import { effectiveMaxWaitMs, type TenancyLimits } from "../api/tenancy.js";
import type { AffinityPolicySpec, PipelineRun } from "../api/types.js";
import { tektonClaimName } from "../placement/names.js";
import {
  type ClaimConflict,
  claimConflict,
  conflictMessage,
  isOnePodClaim,
  isSingleNodeClaim,
  type PlaceholderPlan,
  type PlannedClaim,
  READ_WRITE_ONCE,
  READ_WRITE_ONCE_POD,
  sharedClaims,
} from "../placement/plan.js";
import {
  NO_ROOM,
  type Reservation,
  reservationStatefulSet,
  reservesLargestTask,
} from "../placement/reservation.js";
import {
  claimsFromTemplates,
  type PlacementContext,
  placeholderStatefulSet,
} from "../placement/statefulset.js";
import { type NodeProblem, nodeProblem } from "./node-health.js";
import { decideWait, type OnMaxWait } from "./waiting.js";

/** How long a placeholder StatefulSet may go without a pod before the run reports it. */
const MISSING_POD_AFTER_MS = 10_000;

export function isDone(run: PipelineRun): boolean {
  const succeeded = run.status?.conditions?.find((c) => c.type === "Succeeded");
  return succeeded !== undefined && succeeded.status !== "Unknown";
}

// ---- what a reconcile observed ----

/** One planned placeholder and what the caches hold for it. */
export interface PlaceholderObservation {
  plan: PlaceholderPlan;
  /** The StatefulSet named after the plan. */
  set?: V1StatefulSet;
  /** The pod named `<set>-0`, whoever owns it (currentPod keeps only the set's own). */
  pod?: V1Pod;
  /** The set's FailedCreate events (matched by its uid); only gathered while it has no pod of its own. */
  failedCreates: CoreV1Event[];
  /** With reserve: LargestTask, its reservation (reservation.ts): the set named reservationName(plan),
   * its pod `<set>-0`, and the set's FailedCreate events while it has no pod. */
  reservation?: { set?: V1StatefulSet; pod?: V1Pod; failedCreates: CoreV1Event[] };
}

export interface RunOptions {
  limits: TenancyLimits;
  notReadyGraceMs: number;
  settlePeriodMs: number;
  waitRequeueMs: number;
}

export interface RunObservation {
  /** The run as the cache holds it (its resourceVersion fences every write). */
  run: PipelineRun;
  /** Its policy spec in force (effectiveSpec); undefined when it has none. */
  spec: AffinityPolicySpec | undefined;
  /** One entry per plan of planPlaceholders(run, spec.mode, accessModes), in plan order; the access
   * modes of user PVCs as read while the run is active (claimsMatter), unknown otherwise. */
  placeholders: PlaceholderObservation[];
  /** The run's namespace's isolation group, if any. */
  isolationGroup?: string;
  /** The nodes the placeholder pods are on, by name; a name missing here is a node that is gone. */
  nodes: Record<string, V1Node>;
  /** When each of those nodes started to look unusable (NodeTracker); missing: not seen, i.e. now. */
  troubleSince: Record<string, number>;
  /** With a topologyKey wider than a node: for a placeholder node that looks unusable, the other nodes of
   * its domain (same topologyKey value), by the placeholder node's name. */
  domainNodes?: Record<string, V1Node[]>;
  /** Set when Tekton's own affinity assistant is on (TektonFlags.conflict()). */
  tektonConflict?: string;
  /** reserve: LargestTask, while a reservation is still to be made: the run's largest task, or why its
   * tasks cannot be resolved (then the run goes on as with None, and says so). */
  reserve?: { reservation: Reservation } | { unresolvable: string };
  /** Tekton's config-defaults default-affinity-assistant-pod-template, when set and valid. */
  tektonDefaults?: TektonDefaultTemplate;
  now: number;
  options: RunOptions;
  /** Of the run's life so far, the milliseconds no replica could act (Redis down): not waiting time. */
  unavailableMs?: number;
}

// ---- what to do about it ----

/**
 * Performed in order by PipelineRunReconciler; a failing step (other than the answers each step
 * tolerates) ends the reconcile, and the job is retried from fresh state.
 */
export type RunAction =
  /** Create a volumeClaimTemplate workspace's claim under Tekton's name. A refusal the claim does not
   * survive (it does not exist) skips this plan's createPlaceholder/replacePlaceholder and is the
   * run's `refused` for decideGate. */
  | { type: "createClaim"; plan: string; claim: V1PersistentVolumeClaim }
  /** Create the placeholder StatefulSet; a refusal (the set does not exist) is the run's `refused`. */
  | { type: "createPlaceholder"; plan: string; set: V1StatefulSet }
  /** Create the reservation StatefulSet (reserve: LargestTask) before the placeholder; a refusal is the
   * run's `refused`. */
  | { type: "createReservation"; plan: string; set: V1StatefulSet; reservation: Reservation }
  /** After createPlaceholder, if it created the set just now: a Warning ReserveUnresolved event (the run
   * goes on without a reservation). */
  | { type: "reserveUnresolved"; plan: string; message: string }
  /** After createPlaceholder: a Normal ClaimNotMounted event, if that step created the set just now (so
   * once per placeholder, not once per reconcile). */
  | { type: "claimNotMounted"; plan: string; claim: string; message: string }
  /** After createPlaceholder, if it created the set just now: a Warning PriorityClassIgnored event (a
   * priorityClassName the operator does not allow was left off the placeholder). */
  | { type: "priorityClassIgnored"; plan: string; message: string }
  /** Delete a waiting placeholder whose template is stale (uid precondition) and say so in a
   * PlaceholderUpdated event; the next reconcile creates it anew. */
  | { type: "replacePlaceholder"; plan: string; set: V1StatefulSet }
  /** Clear the set's evicted-from annotation (fenced) and emit Migrated; a conflict fails the job, which is retried from fresh state. */
  | { type: "reportArrival"; set: V1StatefulSet; from: string; to: string }
  /** Move the placeholder off `nodeName`: unless a claim's volume is pinned there (pinnedNode, read
   * by the executor; then the cannotMigrate of pinnedCannotMigrate instead), mark the set
   * evicted-from/at (fenced), delete the pod (uid precondition; forced unless `holdsSingleNodeClaim`
   * and the node still exists), count it and emit Migrating. */
  | {
      type: "evict";
      set: V1StatefulSet;
      pod: V1Pod;
      /** reserve: LargestTask: the reservation pod beside it, deleted with it. */
      reservationPod?: V1Pod;
      nodeName: string;
      problem: NodeProblem;
      plan: string;
      /** The claims the placeholder stands for, mounted or not (ReadWriteOncePod); any of them pinned
       * to the node keeps it there: the tasks that follow it must run where that volume is. */
      claimNames: string[];
      /** It mounts a claim whose volume attaches to one node at a time (isSingleNodeClaim): its pod is
       * deleted the normal way, so its kubelet confirms the volume is free before another starts. */
      holdsSingleNodeClaim: boolean;
    }
  /** A Warning CannotMigrate event. */
  | { type: "cannotMigrate"; message: string }
  /** Clear the gate and the Waiting annotation, set placed-on; then the Tekton-conflict warning (if
   * any), the placement latency and a Placed event. */
  | {
      type: "releaseGate";
      nodes: string[];
      message: string;
      tektonConflict?: string;
      /** Claims with no placeholder (usable from every node): the run's task pods do not follow them. */
      sharedClaims?: string[];
    }
  /** Set the Waiting annotation and emit a Warning Waiting event. */
  | { type: "setWaiting"; reason: string }
  /** Mark the run Succeeded=False (status, fenced) and emit a Warning. `cause` "maxWait" (onMaxWait: Fail):
   * reason AffinityMaxWaitExceeded, counted, event MaxWaitExceeded; "unsatisfiable" (claimConflict):
   * reason AffinityUnsatisfiable, event Unsatisfiable. */
  | { type: "failRun"; message: string; cause: FailCause }
  /** Delete the run's placeholder StatefulSets, as the cache lists them when this step runs. */
  | { type: "deletePlaceholders" }
  /** onMaxWait: Release: drop the managed label, gate and Waiting annotation, record why, emit
   * ReleasedWithoutCoscheduling; counted when `cause` is "maxWait". */
  | { type: "releaseWithoutCoscheduling"; message: string; cause: FailCause }
  /** The run is done: delete its placeholders, those of `claims` it owns, mark it cleaned up, emit
   * CleanedUp. */
  | { type: "cleanUp"; claims: string[] }
  /** Look at the run again after this long (several: the soonest). */
  | { type: "requeueAfter"; ms: number };

/** Why a run is failed or released without co-scheduling: it waited past maxWait, or no placement can
 * satisfy it (claimConflict). */
export type FailCause = "maxWait" | "unsatisfiable";

export type RunActionOf<T extends RunAction["type"]> = Extract<RunAction, { type: T }>;

type Stage = "released" | "ignored" | "done" | "active";

function stage({ run, spec }: Pick<RunObservation, "run" | "spec">): Stage {
  // Released without co-scheduling: no longer ours, but a placeholder may be left to remove.
  if (run.metadata.annotations?.[RELEASED_UNCOSCHEDULED_ANNOTATION]) return "released";
  if (run.metadata.labels?.[MANAGED_LABEL] !== "true") return "ignored";
  if (!spec || spec.mode === "disabled") return "ignored";
  return isDone(run) ? "done" : "active";
}

/** Whether a reconcile of the run plans placeholders (it is ours, live, and not released): only then
 * are its user PVCs read for their access modes. */
export function claimsMatter(run: PipelineRun, spec: AffinityPolicySpec | undefined): boolean {
  return stage({ run, spec }) === "active";
}

/** When the gate began holding the run (ms): the takeover time when its creator pended it first. */
export function gatedSince(run: PipelineRun, now: number): number {
  const at = Date.parse(run.metadata.annotations?.[GATED_AT_ANNOTATION] ?? "");
  return Number.isFinite(at) ? at : new Date(run.metadata.creationTimestamp ?? now).getTime();
}

/** Pending, and not by us: someone else holds the run back. */
export function isUserPending(run: PipelineRun): boolean {
  return run.spec.status === PENDING_STATUS && run.metadata.annotations?.[GATED_ANNOTATION] !== "true";
}

export function isGated(run: PipelineRun): boolean {
  return run.spec.status === PENDING_STATUS && run.metadata.annotations?.[GATED_ANNOTATION] === "true";
}

/** The placeholder's pod if its current set owns it. Only the current set's: a set replaced after its
 * policy changed leaves its old pod behind for a moment, on a node the new settings may not allow. */
export function currentPod(p: PlaceholderObservation): V1Pod | undefined {
  const owner = p.pod?.metadata?.ownerReferences?.find((o) => o.controller)?.uid;
  return p.pod && p.set && owner === p.set.metadata?.uid ? p.pod : undefined;
}

/**
 * Everything that does not wait for an apiserver answer: a done run's clean-up; a live run's missing
 * placeholders (and template claims), stale waiting placeholders, reported arrivals and moves off
 * nodes that can no longer hold a placeholder. decideGate follows, once the creates have been tried.
 */
export function decideRun(obs: RunObservation): RunAction[] {
  switch (stage(obs)) {
    case "released":
      // Its placeholders go at once; its template claims, once it finishes, as any run's would.
      return isDone(obs.run) && obs.spec ? decideCleanUp(obs) : [{ type: "deletePlaceholders" }];
    case "ignored":
      return [];
    case "done":
      return decideCleanUp(obs);
    case "active":
      // Created Pending by a user or a queueing controller (Kueue, Konflux): not ours to place until they
      // release it; then the gate takes it over (gate.ts guardMarks).
      if (isUserPending(obs.run)) return [];
      // Nothing is created for a gated run no placement can satisfy: decideGate fails or releases it.
      if (isGated(obs.run) && runConflict(obs)) return [];
      return [...decidePlaceholders(obs), ...decideMigration(obs)];
  }
}

// ---- placement ----

function decidePlaceholders(obs: RunObservation): RunAction[] {
  const { run } = obs;
  const spec = obs.spec!;
  const gated = isGated(run);
  const ctx: PlacementContext = {
    limits: obs.options.limits,
    ...(obs.isolationGroup ? { isolationGroup: obs.isolationGroup } : {}),
    ...(obs.tektonDefaults ? { tektonDefaults: obs.tektonDefaults } : {}),
  };
  const actions: RunAction[] = [];
  for (const p of obs.placeholders) {
    const { plan } = p;
    // No claim cache: it is asked for, and "already exists" is the answer that it does (so a claim
    // deleted since is made again, and a refused one keeps the run waiting). Only while that can
    // matter: while the run is gated, or while this plan's set is missing (created, or made again,
    // this reconcile, after its claim). Once the run is released and its set exists, Tekton creates
    // any missing template claim with the TaskRuns' pods; asking on every reconcile of a running run
    // would only cost a refused POST per claim.
    if (gated || !p.set) {
      for (const claim of claimsFromTemplates(run, plan))
        actions.push({ type: "createClaim", plan: plan.name, claim });
    }
    // reserve: LargestTask: the reservation first; the placeholder once it holds a node (reservation.ts).
    const reserving =
      reservesLargestTask(spec) && (!!p.reservation?.set || "reservation" in (obs.reserve ?? {}));
    if (reserving && !p.reservation?.set && obs.reserve && "reservation" in obs.reserve) {
      const set = reservationStatefulSet(run, spec, plan, obs.reserve.reservation, ctx);
      actions.push({ type: "createReservation", plan: plan.name, set, reservation: obs.reserve.reservation });
    }
    const reservationPod = p.reservation && currentPod({ plan, ...p.reservation });
    if (reserving && !p.set && gated && !reservationPod?.spec?.nodeName) continue;
    const desired = placeholderStatefulSet(run, spec, plan, { ...ctx, reserving });
    const existing = p.set;
    if (!existing) {
      actions.push({ type: "createPlaceholder", plan: plan.name, set: desired });
      if (obs.reserve && "unresolvable" in obs.reserve) {
        actions.push({ type: "reserveUnresolved", plan: plan.name, message: obs.reserve.unresolvable });
      }
      const ignored = ignoredPriorityClass(spec, run, ctx);
      if (ignored) actions.push({ type: "priorityClassIgnored", plan: plan.name, message: ignored });
      for (const claim of plan.claims.filter(isOnePodClaim)) {
        actions.push({
          type: "claimNotMounted",
          plan: plan.name,
          claim: claim.name,
          message: `placeholder ${plan.name} does not mount claim ${claim.name} because it is ReadWriteOncePod (only one pod may use it, and that must be the task's), so its node is chosen by the tasks' affinity alone`,
        });
      }
      continue;
    }
    // Only a placeholder that holds nothing yet may be replaced when its policy changed.
    const replaceable = gated && !currentPod(p)?.spec?.nodeName;
    const want = desired.metadata?.annotations?.[TEMPLATE_HASH_ANNOTATION];
    if (replaceable && existing.metadata?.annotations?.[TEMPLATE_HASH_ANNOTATION] !== want) {
      // Its policy changed while the run waited: the next reconcile creates it anew. Nothing runs on
      // it yet (the run is gated and the pod unscheduled), so replacing it costs nothing.
      actions.push({ type: "replacePlaceholder", plan: plan.name, set: existing });
    }
  }
  return actions;
}

/** Why the placeholder gets no priority class although one was asked for (by the run's podTemplate, the
 * policy or Tekton's default template, in that order): the operator does not allow it. The policy's
 * own disallowed class already shows on the policy (Ready=False); the run's shows nowhere else. */
export function ignoredPriorityClass(
  spec: AffinityPolicySpec,
  run: PipelineRun,
  ctx: PlacementContext,
): string | undefined {
  const wanted = effectivePlaceholderTemplate(spec, run, ctx.tektonDefaults).priorityClassName;
  const allowed = ctx.limits.allowedPriorityClasses;
  if (!wanted || allowed.includes(wanted)) return undefined;
  return `priorityClassName "${wanted}" is not allowed by the operator (allowed: ${allowed.length ? allowed.join(", ") : "none"}; --allowed-priority-classes), so the placeholder has no priority class: remove it from the run's taskRunTemplate.podTemplate or the policy, or ask the operator to allow it`;
}

// ---- migration off nodes that can no longer hold a placeholder ----

function decideMigration(obs: RunObservation): RunAction[] {
  const { now } = obs;
  const { notReadyGraceMs, settlePeriodMs } = obs.options;
  const actions: RunAction[] = [];
  let requeueAfterMs: number | undefined;
  for (const p of obs.placeholders) {
    const { plan, set } = p;
    const pod = currentPod(p);
    const nodeName = pod?.spec?.nodeName;
    if (!set || !pod || !nodeName || pod.metadata?.deletionTimestamp) continue;
    const from = set.metadata?.annotations?.[EVICTED_FROM_ANNOTATION];
    if (from && from !== nodeName) actions.push({ type: "reportArrival", set, from, to: nodeName });

    const tolerations = pod.spec?.tolerations ?? [];
    const problem = nodeProblem(obs.nodes[nodeName], tolerations, now, notReadyGraceMs);
    if (!problem) continue;
    // Sharing a zone, the run needs the zone, not this node: while another node of it is usable the
    // tasks go there, and the placeholder (which holds no single-node volume then) stays. A node that
    // is gone takes its pods with it, so that one still moves.
    const domain = obs.domainNodes?.[nodeName];
    if (
      problem.reason !== "Gone" &&
      domain?.some((n) => !nodeProblem(n, tolerations, now, notReadyGraceMs))
    ) {
      continue;
    }
    // NotReady waits out its grace period; every problem waits out the settle period, so a quick
    // uncordon cancels the move; and a placeholder moves at most once per settle period.
    // The eviction time was written by whichever replica evicted, by its clock: a clock minutes ahead
    // of ours must not hold the placeholder for minutes, so that wait is at most one settle period.
    // (One behind only shortens it; troubleSince, by our own clock, still holds the move a period.)
    const lastEviction = Number(set.metadata?.annotations?.[EVICTED_AT_ANNOTATION] ?? 0);
    const settleLeft = Math.max(
      problem.waitMs,
      (obs.troubleSince[nodeName] ?? now) + settlePeriodMs - now,
      Math.min(lastEviction + settlePeriodMs - now, settlePeriodMs),
    );
    if (settleLeft > 0) {
      requeueAfterMs = Math.min(requeueAfterMs ?? settleLeft, settleLeft);
      continue;
    }
    const singleNode = plan.claims.filter(isSingleNodeClaim);
    if (problem.reason === "NotReady" && singleNode.length) {
      // The node may still be running the old pod (or a task's) with the claim attached, and we cannot
      // ask it. A force delete would let the StatefulSet start a second pod elsewhere on the same
      // ReadWriteOnce volume, breaking its at-most-one guarantee; so, as Kubernetes itself does, wait
      // for the node. ReadWriteMany and ReadOnlyMany volumes may be used from two nodes: no reason to wait.
      const many = singleNode.length > 1;
      actions.push({
        type: "cannotMigrate",
        message: `${problem.message}, but placeholder ${plan.name} stands for claim${many ? "s" : ""} ${singleNode.map(describeClaim).join(", ")}, which may still be attached there: moving it now could use one ReadWriteOnce volume from two nodes; it moves once the node is Ready again or removed (kubectl delete node ${nodeName})`,
      });
      continue;
    }
    // Its reservation goes too: the pair lands again together, wherever the first of them fits.
    const reservationPod = p.reservation && currentPod({ plan, ...p.reservation });
    actions.push({
      type: "evict",
      set,
      pod,
      ...(reservationPod ? { reservationPod } : {}),
      nodeName,
      problem,
      plan: plan.name,
      claimNames: plan.claims.map((c) => c.name),
      holdsSingleNodeClaim: plan.claims.some((c) => isSingleNodeClaim(c) && !isOnePodClaim(c)),
    });
  }
  // While the run is gated, the gate's answer (decideGate) is the reconcile's and these timers are
  // dropped, as before decisions and actions were split: a waiting gate looks again within
  // MAX_WAIT_REQUEUE_MS anyway; a run released now comes back on its next event, not on this timer.
  if (requeueAfterMs !== undefined && !isGated(obs.run)) {
    actions.push({ type: "requeueAfter", ms: requeueAfterMs });
  }
  return actions;
}

/** A claim as a CannotMigrate message names it: with the access mode that keeps it on one node. */
function describeClaim(claim: PlannedClaim): string {
  const modes = claim.accessModes;
  if (!modes?.length) return `${claim.name} (access modes unknown, taken as ReadWriteOnce)`;
  return `${claim.name} (${modes.includes(READ_WRITE_ONCE_POD) ? READ_WRITE_ONCE_POD : READ_WRITE_ONCE})`;
}

/** Where a placeholder's volume must stay: set when its claim is bound to a PV that only `nodeName`
 * can use (e.g. a local PV). `pv` is the claim's spec.volumeName, as read (undefined: not found). */
export function pinnedNode(
  claim: V1PersistentVolumeClaim | undefined,
  pv: V1PersistentVolume | undefined,
  nodeName: string,
): string | undefined {
  const volumeName = claim?.spec?.volumeName;
  if (!volumeName || !pv) return undefined;
  const terms = pv.spec?.nodeAffinity?.required?.nodeSelectorTerms ?? [];
  const values = terms.flatMap((t) => (t.matchExpressions ?? []).flatMap((e) => e.values ?? []));
  // Only a volume that can live on this node alone pins the placeholder; a zonal one can follow.
  return values.length === 1 && values[0] === nodeName
    ? `node ${nodeName} (PersistentVolume ${volumeName})`
    : undefined;
}

/** What an `evict` becomes when the executor finds its volume pinned (pinnedNode's answer). */
export function pinnedCannotMigrate(
  evict: RunActionOf<"evict">,
  claimName: string,
  pinned: string,
): RunActionOf<"cannotMigrate"> {
  return {
    type: "cannotMigrate",
    message: `${evict.problem.message}, but placeholder ${evict.plan} cannot move: its volume ${claimName} is bound to ${pinned}; the run's remaining tasks wait until the node is usable again`,
  };
}

// ---- the gate ----

function scheduleFailure(pod: V1Pod | undefined): string | undefined {
  const cond = pod?.status?.conditions?.find((c) => c.type === "PodScheduled" && c.status === "False");
  return cond?.message ? `${cond.reason ?? "Unschedulable"}: ${cond.message}` : undefined;
}

/**
 * Once the creates of decideRun were tried (`refused`: what the apiserver said when it refused one):
 * release a gated run whose placeholders are all scheduled; otherwise say what it waits for, and past
 * maxWait fail or release it (onMaxWait). Nothing for a run that is not gated.
 */
export function decideGate(obs: RunObservation, refused: string | undefined): RunAction[] {
  if (stage(obs) !== "active" || !isGated(obs.run)) return [];
  const { run, now } = obs;
  const spec = obs.spec!;
  // No wait can help a run no placement satisfies: it fails, or starts without co-scheduling, at once.
  const conflict = runConflict(obs);
  if (conflict) {
    const message = conflictMessage(conflict);
    return (spec.onMaxWait ?? "Fail") === "Release"
      ? releaseUncoscheduled(message, "unsatisfiable")
      : [{ type: "failRun", message, cause: "unsatisfiable" }];
  }
  const pods = obs.placeholders.map(currentPod);
  const unscheduled = obs.placeholders.filter(
    (_, i) => !pods[i]?.spec?.nodeName || pods[i]?.metadata?.deletionTimestamp,
  );
  if (unscheduled.length === 0 && !refused) {
    const nodes = [...new Set(pods.map((p) => p?.spec?.nodeName ?? ""))].filter(Boolean);
    const n = obs.placeholders.length;
    const shared = sharedClaims(
      run,
      obs.placeholders.map((p) => p.plan),
      spec.mode,
    );
    const sharedNote = shared.length
      ? ` (${shared.join(", ")} can be used from every node: no placeholder, no task follows ${shared.length > 1 ? "them" : "it"})`
      : "";
    return [
      {
        type: "releaseGate",
        nodes,
        message:
          (n
            ? `placeholder${n > 1 ? "s" : ""} scheduled on ${nodes.join(",")}; the run may start`
            : "no PVC-backed workspace to co-schedule; the run may start") + sharedNote,
        ...(obs.tektonConflict ? { tektonConflict: obs.tektonConflict } : {}),
        ...(shared.length ? { sharedClaims: shared } : {}),
      },
    ];
  }
  const waiting = refused ?? whyNotPlaced(obs, unscheduled[0]);
  const decision = decideWait({
    // Only while some replica could act: an outage of ours must not use up a run's maxWait.
    // From when the gate held it: its creation, or when its creator released a run created Pending.
    waitedMs: now - gatedSince(run, now) - (obs.unavailableMs ?? 0),
    maxWaitMs: effectiveMaxWaitMs(spec, obs.options.limits),
    // A run that carries its placement cannot start without its placeholder (run-placement.ts).
    onMaxWait: (run.metadata.labels?.[PLACEMENT_LABEL] ? "Fail" : (spec.onMaxWait ?? "Fail")) as OnMaxWait,
    reason: waiting ?? run.metadata.annotations?.[WAITING_ANNOTATION],
    minRequeueMs: obs.options.waitRequeueMs,
  });
  if (decision.action === "fail") return [{ type: "failRun", message: decision.message, cause: "maxWait" }];
  if (decision.action === "release") return releaseUncoscheduled(decision.message, "maxWait");
  const actions: RunAction[] = [];
  // Only a placement that was refused is worth telling the user (and a write). A placeholder that
  // is merely not scheduled *yet* is the normal sub-second path: writing then would slow every run
  // and make our own next write conflict.
  if (waiting && run.metadata.annotations?.[WAITING_ANNOTATION] !== waiting) {
    actions.push({ type: "setWaiting", reason: waiting });
  }
  actions.push({ type: "requeueAfter", ms: decision.requeueAfterMs });
  return actions;
}

function releaseUncoscheduled(message: string, cause: FailCause): RunAction[] {
  // Placeholders first: once the managed label is gone the run leaves our cache (it is watched by that
  // label), and a retry would no longer see it. Deleting them twice, if the patch fails, is harmless.
  return [{ type: "deletePlaceholders" }, { type: "releaseWithoutCoscheduling", message, cause }];
}

/** A task of the gated run that binds two claims held apart (workspaces mode), when the run says so. */
function runConflict(obs: RunObservation): ClaimConflict | undefined {
  if (!obs.spec) return undefined;
  return claimConflict(
    obs.run,
    obs.spec.mode,
    obs.placeholders.map((p) => p.plan),
  );
}

/** Why the first unscheduled placeholder is not placed, if anything says so yet. */
function whyNotPlaced(obs: RunObservation, first: PlaceholderObservation | undefined): string | undefined {
  if (!first) return undefined;
  // reserve: LargestTask: the placeholder waits for its reservation to find room.
  if (first.reservation?.set && !first.set) {
    const r: PlaceholderObservation = { plan: first.plan, ...first.reservation };
    const pod = currentPod(r);
    const task = first.reservation.set.metadata?.annotations?.[RESERVED_FOR_ANNOTATION];
    const unschedulable = scheduleFailure(pod);
    if (unschedulable) return `${NO_ROOM} (${task}): ${unschedulable}`;
    const failedCreate = latestFailedCreate(r, pod);
    if (failedCreate)
      return `the reservation of room for the run's largest task (${task}) cannot be created: ${failedCreate}`;
    return undefined;
  }
  const name = first.plan.name;
  const pod = currentPod(first);
  const unschedulable = scheduleFailure(pod);
  if (unschedulable) return `placeholder ${name} cannot be scheduled: ${unschedulable}`;
  const failedCreate = latestFailedCreate(first, pod);
  if (failedCreate) return `placeholder ${name} cannot be created: ${failedCreate}`;
  const missing = missingPod(obs, first, pod);
  return missing ? `placeholder ${name} cannot be scheduled: ${missing}` : undefined;
}

/** The StatefulSet controller's latest FailedCreate event for this placeholder (quota, Pod Security). */
function latestFailedCreate(p: PlaceholderObservation, pod: V1Pod | undefined): string | undefined {
  if (pod) return undefined;
  const uid = p.set?.metadata?.uid;
  if (!uid) return undefined;
  const when = (e: CoreV1Event) =>
    new Date(e.lastTimestamp ?? e.eventTime ?? e.firstTimestamp ?? 0).getTime();
  const latest = p.failedCreates
    .filter((e) => e.involvedObject.uid === uid)
    .sort((a, b) => when(b) - when(a))[0];
  return latest?.message;
}

/** A placeholder StatefulSet that has not created its pod for a while (e.g. its service account does
 * not exist, or a quota forbids it): the StatefulSet's own events say why. */
function missingPod(
  obs: RunObservation,
  p: PlaceholderObservation,
  pod: V1Pod | undefined,
): string | undefined {
  if (pod) return undefined;
  const name = p.plan.name;
  const created = p.set?.metadata?.creationTimestamp
    ? new Date(p.set.metadata.creationTimestamp).getTime()
    : obs.now;
  if (obs.now - created < MISSING_POD_AFTER_MS) return undefined;
  return `NoPod: StatefulSet ${name} has not created its pod; see why with kubectl describe statefulset ${name} -n ${obs.run.metadata.namespace}`;
}

// ---- completion ----

function decideCleanUp(obs: RunObservation): RunAction[] {
  const { run } = obs;
  if (run.metadata.annotations?.[CLEANED_UP_ANNOTATION] === "true") return [];
  return [{ type: "cleanUp", claims: templateClaimsToDelete(run, obs.spec!.mode) }];
}

/** PVCs from volumeClaimTemplate workspaces: always in pipelineruns and isolate-pipelinerun modes; in
 * workspaces mode only with tekton.dev/auto-cleanup-pvc: "true" (exactly). User PVCs: never. (The
 * executor deletes only those the run owns: never one that merely has the same name.) */
function templateClaimsToDelete(run: PipelineRun, mode: AffinityPolicySpec["mode"]): string[] {
  const wanted = mode !== "workspaces" || run.metadata.annotations?.[AUTO_CLEANUP_PVC_ANNOTATION] === "true";
  if (!wanted) return [];
  const names: string[] = [];
  for (const ws of run.spec.workspaces ?? []) {
    if (!ws.volumeClaimTemplate) continue;
    const meta = ws.volumeClaimTemplate.metadata as { name?: string } | undefined;
    names.push(tektonClaimName(meta?.name, ws.name, run.metadata.uid ?? ""));
  }
  return names;
}
