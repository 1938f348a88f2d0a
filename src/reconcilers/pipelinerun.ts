// PipelineRun reconciler: observed state (informer caches) -> desired state -> converge.
//
//   managed run, not done:  placeholders (and template claims) exist; gate cleared once every
//                           placeholder pod is scheduled; until then the run says what it waits for,
//                           within seconds (refused creates, FailedCreate, unschedulable), and waits
//                           at most maxWait (then onMaxWait: Fail ends it, Release starts it alone).
//                           A waiting placeholder that no longer matches its policy is recreated.
//   placeholder on a node that can no longer hold it (cordon, taint, NotReady): delete the pod so its
//                           StatefulSet recreates it elsewhere; report the move once it lands.
//   done:                   placeholders deleted, template PVCs deleted per the cleanup rules.
//
// Every step is idempotent and every write to the run is fenced by resourceVersion, so a job that runs
// twice, late, or on two replicas at once cannot do harm.

import type { CoreV1Event, V1Pod, V1StatefulSet } from "@kubernetes/client-node";
import type { Logger } from "pino";
import {
  GATED_ANNOTATION,
  GROUP,
  MANAGED_LABEL,
  PENDING_STATUS,
  PLACEHOLDER_RUN_UID_LABEL,
  TEKTON_GROUP,
  TEKTON_VERSION,
  WAITING_ANNOTATION,
} from "../api/constants.js";
import { DEFAULT_TENANCY_LIMITS, effectiveMaxWaitMs, type TenancyLimits } from "../api/tenancy.js";
import type { AffinityPolicySpec, Mode, PipelineRun } from "../api/types.js";
import { apiMessage, isConflict, isNotFound, type KubeClients, statusCode } from "../kube/clients.js";
import type { EventRecorder, EventTarget } from "../kube/events.js";
import { annotateSetFenced, patchRunFenced, patchRunStatusFenced } from "../kube/fenced.js";
import type { Caches } from "../kube/informers.js";
import type { TektonFlags } from "../kube/tekton-flags.js";
import type { Metrics } from "../metrics.js";
import { tektonClaimName } from "../placement/names.js";
import { type PlaceholderPlan, planPlaceholders } from "../placement/plan.js";
import {
  claimFromTemplate,
  type PlacementContext,
  placeholderStatefulSet,
  TEMPLATE_HASH_ANNOTATION,
} from "../placement/statefulset.js";
import type { ReconcileResult } from "../queue/work-queue.js";
import { effectiveSpec } from "./effective-spec.js";
import { type NodeProblem, nodeProblem } from "./node-health.js";
import type { NodeTracker } from "./node-tracker.js";
import { decideWait, type OnMaxWait } from "./waiting.js";

export const CLEANED_UP_ANNOTATION = `${GROUP}/cleaned-up`;
export const PLACED_ON_ANNOTATION = `${GROUP}/placed-on`;
/** On a placeholder StatefulSet: the node its pod was evicted from, and when (for the settle period). */
export const EVICTED_FROM_ANNOTATION = `${GROUP}/evicted-from`;
export const EVICTED_AT_ANNOTATION = `${GROUP}/evicted-at`;
export const AUTO_CLEANUP_PVC_ANNOTATION = "tekton.dev/auto-cleanup-pvc";
/** On a run that waited past maxWait and was started without co-scheduling (onMaxWait: Release). */
export const RELEASED_UNCOSCHEDULED_ANNOTATION = `${GROUP}/released-without-coscheduling`;
/** The Succeeded=False reason of a run that waited past maxWait (onMaxWait: Fail). */
export const MAX_WAIT_EXCEEDED_REASON = "AffinityMaxWaitExceeded";
/** How long a placeholder StatefulSet may go without a pod before the run reports it. */
const MISSING_POD_AFTER_MS = 10_000;

export interface RunReconcilerOptions {
  clients: KubeClients;
  caches: Caches;
  events: EventRecorder;
  metrics: Metrics;
  logger: Logger;
  clusterDefault?: AffinityPolicySpec;
  /** How often a waiting run re-checks its placeholder (events usually come first). Default 1 s. */
  waitRequeueMs?: number;
  /** How long a node may be NotReady before its placeholders move. Default 30 s. */
  notReadyGraceMs?: number;
  /** Settle period: a node must stay unusable this long before its placeholders move (an uncordon in
   * between cancels the move), and a placeholder moves at most once per period. Default 10 s. */
  settlePeriodMs?: number;
  /** When each node went bad, as observed by this replica's node watch. */
  nodeTracker: NodeTracker;
  tektonFlags: TektonFlags;
  /** The operator's bounds (topologyKey, priority, image, resources, maxWait, isolation groups). */
  tenancy?: TenancyLimits;
  /** Told the run as our own write left it, so its watch event does not come back as new work. */
  onRunWritten?: (run: PipelineRun) => void;
}

export function isDone(run: PipelineRun): boolean {
  const succeeded = run.status?.conditions?.find((c) => c.type === "Succeeded");
  return succeeded !== undefined && succeeded.status !== "Unknown";
}

function runTarget(run: PipelineRun): EventTarget {
  return {
    apiVersion: `${TEKTON_GROUP}/${TEKTON_VERSION}`,
    kind: "PipelineRun",
    name: run.metadata.name,
    namespace: run.metadata.namespace,
    uid: run.metadata.uid,
  };
}

/** A create the apiserver refused for a reason a user can fix (quota, admission policy, invalid spec):
 * worth telling the run, not retrying blindly. Other errors (5xx, network) are retried. */
function isRefusal(err: unknown): boolean {
  const code = statusCode(err);
  return code !== undefined && code >= 400 && code < 500 && code !== 409 && code !== 429;
}

function scheduleFailure(pod: V1Pod | undefined): string | undefined {
  const cond = pod?.status?.conditions?.find((c) => c.type === "PodScheduled" && c.status === "False");
  return cond?.message ? `${cond.reason ?? "Unschedulable"}: ${cond.message}` : undefined;
}

export class PipelineRunReconciler {
  private readonly waitRequeueMs: number;
  private readonly notReadyGraceMs: number;
  private readonly settlePeriodMs: number;
  private readonly limits: TenancyLimits;

  constructor(private readonly o: RunReconcilerOptions) {
    this.limits = o.tenancy ?? DEFAULT_TENANCY_LIMITS;
    this.waitRequeueMs = o.waitRequeueMs ?? 1000;
    this.notReadyGraceMs = o.notReadyGraceMs ?? 30_000;
    this.settlePeriodMs = o.settlePeriodMs ?? 10_000;
  }

  async reconcile(namespace: string, name: string): Promise<ReconcileResult> {
    const run = this.o.caches.runs.get(name, namespace);
    // Deleted runs need nothing: owner references let the garbage collector remove what we made.
    if (!run?.metadata.uid) return {};
    // Released without co-scheduling: no longer ours, but a placeholder may be left to remove.
    if (run.metadata.annotations?.[RELEASED_UNCOSCHEDULED_ANNOTATION]) {
      await this.deletePlaceholders(run);
      return {};
    }
    if (run.metadata.labels?.[MANAGED_LABEL] !== "true") return {};
    const spec = effectiveSpec(
      run,
      (ns, n) => this.o.caches.policies.get(n, ns),
      this.o.clusterDefault,
      this.limits,
    );
    if (!spec || spec.mode === "disabled") return {};
    const log = this.o.logger.child({ namespace, name, uid: run.metadata.uid });

    if (isDone(run)) return this.cleanUp(run, spec.mode, log);

    const gated =
      run.spec.status === PENDING_STATUS && run.metadata.annotations?.[GATED_ANNOTATION] === "true";
    const ctx = this.placementContext(run);
    const plans = planPlaceholders(run, spec.mode);
    const pods = plans.map((p) => this.placeholderPod(run, p));
    let refused: string | undefined;
    for (const [i, plan] of plans.entries()) {
      // Only a placeholder that holds nothing yet may be replaced when its policy changed.
      const replaceable = gated && !pods[i]?.spec?.nodeName;
      const refusal = await this.ensurePlaceholder(run, spec, plan, ctx, replaceable, log);
      refused ??= refusal;
    }

    const migration = await this.migrate(run, spec, plans, pods, log);
    if (gated) return this.releaseGateWhenPlaced(run, spec, plans, pods, refused, log);
    return migration;
  }

  // ---- placement ----

  private placementContext(run: PipelineRun): PlacementContext {
    const ns = this.o.caches.namespaces.get(run.metadata.namespace);
    const group = ns?.metadata?.labels?.[this.limits.isolationGroupLabel];
    return { limits: this.limits, ...(group ? { isolationGroup: group } : {}) };
  }

  /**
   * Creates the placeholder (and its template claim) if missing; recreates a replaceable one whose
   * template no longer matches (its policy changed while the run waited). Returns what the apiserver
   * said when it refused a create, for the run to show; throws on errors worth a retry.
   */
  private async ensurePlaceholder(
    run: PipelineRun,
    spec: AffinityPolicySpec,
    plan: PlaceholderPlan,
    ctx: PlacementContext,
    replaceable: boolean,
    log: Logger,
  ): Promise<string | undefined> {
    const ns = run.metadata.namespace;
    const claim = claimFromTemplate(run, plan);
    if (claim) {
      try {
        await this.o.clients.core.createNamespacedPersistentVolumeClaim({ namespace: ns, body: claim });
      } catch (err) {
        if (!isRefusal(err)) ignoreAlreadyExists(err);
        // A quota is checked before "already exists": a full quota refuses a claim we made earlier.
        else if (
          !(await this.exists(() =>
            this.o.clients.core.readNamespacedPersistentVolumeClaim({
              name: claim.metadata!.name!,
              namespace: ns,
            }),
          ))
        ) {
          this.o.metrics.placeholderRefused.inc({ kind: "PersistentVolumeClaim" });
          return `placeholder ${plan.name} cannot be created: PersistentVolumeClaim ${claim.metadata?.name} was refused: ${apiMessage(err)}`;
        }
      }
    }
    const desired = placeholderStatefulSet(run, spec, plan, ctx);
    const existing = this.o.caches.placeholderSets.get(plan.name, ns);
    if (existing) {
      const want = desired.metadata?.annotations?.[TEMPLATE_HASH_ANNOTATION];
      if (replaceable && existing.metadata?.annotations?.[TEMPLATE_HASH_ANNOTATION] !== want) {
        // Its policy changed while the run waited: the next reconcile creates it anew. Nothing runs on
        // it yet (the run is gated and the pod unscheduled), so replacing it costs nothing.
        await this.o.clients.apps
          .deleteNamespacedStatefulSet({
            name: plan.name,
            namespace: ns,
            body: { preconditions: { uid: existing.metadata?.uid }, propagationPolicy: "Background" },
          })
          .catch(ignoreGone);
        log.info({ placeholder: plan.name }, "placeholder no longer matches its policy; recreating it");
        this.recordEvent(
          run,
          "Normal",
          "PlaceholderUpdated",
          `placeholder ${plan.name} no longer matches its policy; recreating it with the new settings`,
        );
      }
      return undefined;
    }
    try {
      await this.o.clients.apps.createNamespacedStatefulSet({ namespace: ns, body: desired });
    } catch (err) {
      if (!isRefusal(err)) {
        ignoreAlreadyExists(err);
        return undefined;
      }
      // Our cache may lag behind a set we created, and a full quota answers 403 before "exists".
      if (
        await this.exists(() =>
          this.o.clients.apps.readNamespacedStatefulSet({ name: plan.name, namespace: ns }),
        )
      )
        return undefined;
      this.o.metrics.placeholderRefused.inc({ kind: "StatefulSet" });
      return `placeholder ${plan.name} cannot be created: StatefulSet was refused: ${apiMessage(err)}`;
    }
    return undefined;
  }

  private placeholderPod(run: PipelineRun, plan: PlaceholderPlan): V1Pod | undefined {
    // StatefulSet pods are named <set>-0. Only the current set's: a set replaced after its policy
    // changed leaves its old pod behind for a moment, on a node the new settings may not allow.
    const ns = run.metadata.namespace;
    const pod = this.o.caches.placeholderPods.get(`${plan.name}-0`, ns);
    const set = this.o.caches.placeholderSets.get(plan.name, ns);
    const owner = pod?.metadata?.ownerReferences?.find((o) => o.controller)?.uid;
    return pod && set && owner === set.metadata?.uid ? pod : undefined;
  }

  /** Whether a read finds the object (404: no; other errors are thrown, for a retry). */
  private async exists(read: () => Promise<unknown>): Promise<boolean> {
    try {
      await read();
      return true;
    } catch (err) {
      if (isNotFound(err)) return false;
      throw err;
    }
  }

  private async releaseGateWhenPlaced(
    run: PipelineRun,
    spec: AffinityPolicySpec,
    plans: PlaceholderPlan[],
    pods: (V1Pod | undefined)[],
    refused: string | undefined,
    log: Logger,
  ): Promise<ReconcileResult> {
    const unscheduled = plans.filter(
      (_, i) => !pods[i]?.spec?.nodeName || pods[i]?.metadata?.deletionTimestamp,
    );
    if (unscheduled.length === 0 && !refused) {
      const nodes = [...new Set(pods.map((p) => p?.spec?.nodeName ?? ""))].filter(Boolean);
      const placed = nodes.join(",");
      await this.patchRun(run, {
        metadata: {
          annotations: {
            [GATED_ANNOTATION]: null,
            [WAITING_ANNOTATION]: null,
            [PLACED_ON_ANNOTATION]: placed,
          },
        },
        spec: { status: null },
      });
      const conflict = this.o.tektonFlags.conflict();
      if (conflict) this.recordEvent(run, "Warning", "TektonAffinityAssistantEnabled", conflict);
      const seconds = (Date.now() - new Date(run.metadata.creationTimestamp ?? Date.now()).getTime()) / 1000;
      this.o.metrics.placementLatency.observe(seconds);
      log.info({ nodes, seconds }, "placeholder scheduled; run released");
      this.recordEvent(
        run,
        "Normal",
        "Placed",
        plans.length
          ? `placeholder${plans.length > 1 ? "s" : ""} scheduled on ${placed}; the run may start`
          : "no PVC-backed workspace to co-schedule; the run may start",
      );
      return {};
    }
    const waiting = refused ?? this.whyNotPlaced(run, plans, pods, unscheduled[0]);
    const decision = decideWait({
      waitedMs: Date.now() - new Date(run.metadata.creationTimestamp ?? Date.now()).getTime(),
      maxWaitMs: effectiveMaxWaitMs(spec, this.limits),
      onMaxWait: (spec.onMaxWait ?? "Fail") as OnMaxWait,
      reason: waiting ?? run.metadata.annotations?.[WAITING_ANNOTATION],
      minRequeueMs: this.waitRequeueMs,
    });
    if (decision.action === "fail") return this.failRun(run, decision.message, log);
    if (decision.action === "release") return this.releaseWithoutCoscheduling(run, decision.message, log);
    // Only a placement that was refused is worth telling the user (and a write). A placeholder that
    // is merely not scheduled *yet* is the normal sub-second path: writing then would slow every run
    // and make our own next write conflict.
    if (waiting && run.metadata.annotations?.[WAITING_ANNOTATION] !== waiting) {
      await this.patchRun(run, { metadata: { annotations: { [WAITING_ANNOTATION]: waiting } } });
      this.recordEvent(run, "Warning", "Waiting", waiting);
    }
    return { requeueAfterMs: decision.requeueAfterMs };
  }

  /** Why the first unscheduled placeholder is not placed, if anything says so yet. */
  private whyNotPlaced(
    run: PipelineRun,
    plans: PlaceholderPlan[],
    pods: (V1Pod | undefined)[],
    first: PlaceholderPlan | undefined,
  ): string | undefined {
    if (!first) return undefined;
    const pod = pods[plans.indexOf(first)];
    const unschedulable = scheduleFailure(pod);
    if (unschedulable) return `placeholder ${first.name} cannot be scheduled: ${unschedulable}`;
    const failedCreate = this.failedCreate(run, first.name, pod);
    if (failedCreate) return `placeholder ${first.name} cannot be created: ${failedCreate}`;
    const missing = this.missingPod(run, first.name, pod);
    return missing ? `placeholder ${first.name} cannot be scheduled: ${missing}` : undefined;
  }

  /** The StatefulSet controller's latest FailedCreate event for this placeholder (quota, Pod Security). */
  private failedCreate(run: PipelineRun, name: string, pod: V1Pod | undefined): string | undefined {
    if (pod) return undefined;
    const set = this.o.caches.placeholderSets.get(name, run.metadata.namespace);
    if (!set?.metadata?.uid) return undefined;
    const when = (e: CoreV1Event) =>
      new Date(e.lastTimestamp ?? e.eventTime ?? e.firstTimestamp ?? 0).getTime();
    const latest = this.o.caches.failedCreates
      .list(run.metadata.namespace)
      .filter((e) => e.involvedObject.uid === set.metadata?.uid)
      .sort((a, b) => when(b) - when(a))[0];
    return latest?.message;
  }

  /** onMaxWait: Fail. The run ends as Tekton would end it, with our reason and the last scheduler reason:
   * Tekton leaves a run alone once its Succeeded condition is False. The next reconcile cleans up. */
  private async failRun(run: PipelineRun, message: string, log: Logger): Promise<ReconcileResult> {
    const now = new Date().toISOString();
    await patchRunStatusFenced(this.o.clients.custom, run, {
      completionTime: now,
      conditions: [
        {
          type: "Succeeded",
          status: "False",
          reason: MAX_WAIT_EXCEEDED_REASON,
          message,
          lastTransitionTime: now,
        },
      ],
    });
    this.o.metrics.maxWaitExceeded.inc({ action: "fail" });
    log.info({ message }, "run waited longer than maxWait; failed it");
    this.recordEvent(run, "Warning", "MaxWaitExceeded", message);
    return {};
  }

  /** onMaxWait: Release. The run is no longer ours: its label goes (so its pods get no affinity), its
   * gate is cleared, and its placeholders are deleted (again by later jobs, should this one stop). */
  private async releaseWithoutCoscheduling(
    run: PipelineRun,
    message: string,
    log: Logger,
  ): Promise<ReconcileResult> {
    // Placeholders first: once the managed label is gone the run leaves our cache (it is watched by that
    // label), and a retry would no longer see it. Deleting them twice, if the patch fails, is harmless.
    await this.deletePlaceholders(run);
    await this.patchRun(run, {
      metadata: {
        labels: { [MANAGED_LABEL]: null },
        annotations: {
          [GATED_ANNOTATION]: null,
          [WAITING_ANNOTATION]: null,
          [RELEASED_UNCOSCHEDULED_ANNOTATION]: message,
        },
      },
      spec: { status: null },
    });
    this.o.metrics.maxWaitExceeded.inc({ action: "release" });
    log.info({ message }, "run waited longer than maxWait; released without co-scheduling");
    this.recordEvent(run, "Warning", "ReleasedWithoutCoscheduling", message);
    return {};
  }

  /** A placeholder StatefulSet that has not created its pod for a while (e.g. its service account does
   * not exist, or a quota forbids it): the StatefulSet's own events say why. */
  private missingPod(run: PipelineRun, name: string, pod: V1Pod | undefined): string | undefined {
    if (pod) return undefined;
    const set = this.o.caches.placeholderSets.get(name, run.metadata.namespace);
    const created = set?.metadata?.creationTimestamp
      ? new Date(set.metadata.creationTimestamp).getTime()
      : Date.now();
    if (Date.now() - created < MISSING_POD_AFTER_MS) return undefined;
    return `NoPod: StatefulSet ${name} has not created its pod; see why with kubectl describe statefulset ${name} -n ${run.metadata.namespace}`;
  }

  /** Events are for people; a reconcile does not wait for them (the recorder logs its own failures). */
  private recordEvent(run: PipelineRun, type: "Normal" | "Warning", reason: string, message: string): void {
    void this.o.events.record(runTarget(run), type, reason, message);
  }

  // ---- migration off nodes that can no longer hold a placeholder ----

  private async migrate(
    run: PipelineRun,
    spec: AffinityPolicySpec,
    plans: PlaceholderPlan[],
    pods: (V1Pod | undefined)[],
    log: Logger,
  ): Promise<ReconcileResult> {
    let requeueAfterMs: number | undefined;
    const soonest = (ms: number) => {
      requeueAfterMs = Math.min(requeueAfterMs ?? ms, ms);
    };
    for (const [i, plan] of plans.entries()) {
      const pod = pods[i];
      const set = this.o.caches.placeholderSets.get(plan.name, run.metadata.namespace);
      const nodeName = pod?.spec?.nodeName;
      if (!set || !pod || !nodeName || pod.metadata?.deletionTimestamp) continue;
      await this.reportArrival(run, set, nodeName);

      const problem = nodeProblem(
        this.o.caches.nodes.get(nodeName),
        pod.spec?.tolerations ?? [],
        Date.now(),
        this.notReadyGraceMs,
      );
      if (!problem) continue;
      // NotReady waits out its grace period; every problem waits out the settle period, so a quick
      // uncordon cancels the move; and a placeholder moves at most once per settle period.
      const now = Date.now();
      const lastEviction = Number(set.metadata?.annotations?.[EVICTED_AT_ANNOTATION] ?? 0);
      const settleLeft = Math.max(
        problem.waitMs,
        this.o.nodeTracker.troubleSince(nodeName, now) + this.settlePeriodMs - now,
        lastEviction + this.settlePeriodMs - now,
      );
      if (settleLeft > 0) {
        soonest(settleLeft);
        continue;
      }
      if (problem.reason === "NotReady" && plan.claimName) {
        // The node may still be running the old pod with the claim attached, and we cannot ask it. A
        // force delete would let the StatefulSet start a second pod elsewhere on the same ReadWriteOnce
        // volume, breaking its at-most-one guarantee; so, as Kubernetes itself does, wait for the node.
        this.recordEvent(
          run,
          "Warning",
          "CannotMigrate",
          `${problem.message}, but placeholder ${plan.name} holds claim ${plan.claimName}, which may still be attached there: moving it now could use one ReadWriteOnce volume from two nodes; it moves once the node is Ready again or removed (kubectl delete node ${nodeName})`,
        );
        continue;
      }
      const pinned = await this.volumePinnedTo(run, plan, nodeName);
      if (pinned) {
        this.recordEvent(
          run,
          "Warning",
          "CannotMigrate",
          `${problem.message}, but placeholder ${plan.name} cannot move: its volume ${plan.claimName} is bound to ${pinned}; the run's remaining tasks wait until the node is usable again`,
        );
        continue;
      }
      await this.evict(run, set, pod, nodeName, problem, Boolean(plan.claimName), log);
    }
    void spec;
    return requeueAfterMs === undefined ? {} : { requeueAfterMs };
  }

  /** Set when the placeholder's claim is bound to a PV that only `nodeName` can use (e.g. a local PV). */
  private async volumePinnedTo(
    run: PipelineRun,
    plan: PlaceholderPlan,
    nodeName: string,
  ): Promise<string | undefined> {
    if (!plan.claimName) return undefined;
    try {
      const claim = await this.o.clients.core.readNamespacedPersistentVolumeClaim({
        name: plan.claimName,
        namespace: run.metadata.namespace,
      });
      if (!claim.spec?.volumeName) return undefined;
      const pv = await this.o.clients.core.readPersistentVolume({ name: claim.spec.volumeName });
      const terms = pv.spec?.nodeAffinity?.required?.nodeSelectorTerms ?? [];
      const values = terms.flatMap((t) => (t.matchExpressions ?? []).flatMap((e) => e.values ?? []));
      // Only a volume that can live on this node alone pins the placeholder; a zonal one can follow.
      return values.length === 1 && values[0] === nodeName
        ? `node ${nodeName} (PersistentVolume ${claim.spec.volumeName})`
        : undefined;
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  private async evict(
    run: PipelineRun,
    set: V1StatefulSet,
    pod: V1Pod,
    nodeName: string,
    { reason, message }: NodeProblem,
    holdsClaim: boolean,
    log: Logger,
  ): Promise<void> {
    // Record where it came from first (fenced), so the arrival can be reported even by another replica.
    await annotateSetFenced(this.o.clients.apps, set, {
      [EVICTED_FROM_ANNOTATION]: nodeName,
      [EVICTED_AT_ANNOTATION]: String(Date.now()),
    });
    // Delete the pod, never the StatefulSet: its controller recreates the pod on a usable node. The uid
    // precondition makes a late duplicate of this job harmless. A placeholder without a claim holds no
    // data, so it is force-deleted (its node may be gone or NotReady). One with a claim is deleted the
    // normal way (its grace period is 0): its node is up here, and its kubelet confirms the container
    // is gone, so the StatefulSet never runs two pods on one ReadWriteOnce volume.
    await this.o.clients.core
      .deleteNamespacedPod({
        name: pod.metadata!.name!,
        namespace: run.metadata.namespace,
        body: { preconditions: { uid: pod.metadata?.uid }, ...(holdsClaim ? {} : { gracePeriodSeconds: 0 }) },
      })
      .catch((err) => {
        if (!isNotFound(err) && !isConflict(err)) throw err;
      });
    this.o.metrics.evictions.inc({ reason });
    log.info({ node: nodeName, reason }, "placeholder evicted");
    this.recordEvent(
      run,
      "Normal",
      "Migrating",
      `${message}: moving placeholder ${set.metadata?.name} off it; running tasks finish where they are, later ones follow the placeholder`,
    );
  }

  private async reportArrival(run: PipelineRun, set: V1StatefulSet, nodeName: string): Promise<void> {
    const from = set.metadata?.annotations?.[EVICTED_FROM_ANNOTATION];
    if (!from || from === nodeName) return;
    try {
      await annotateSetFenced(this.o.clients.apps, set, { [EVICTED_FROM_ANNOTATION]: null });
    } catch (err) {
      if (isConflict(err)) return; // someone else reported it, or the set changed: the next job decides
      throw err;
    }
    this.recordEvent(
      run,
      "Normal",
      "Migrated",
      `placeholder ${set.metadata?.name} moved from node ${from} to node ${nodeName}`,
    );
  }

  // ---- completion ----

  private async cleanUp(run: PipelineRun, mode: Mode, log: Logger): Promise<ReconcileResult> {
    if (run.metadata.annotations?.[CLEANED_UP_ANNOTATION] === "true") return {};
    const sets = await this.deletePlaceholders(run);
    const deletedClaims = await this.cleanUpClaims(run, mode);
    await this.patchRun(run, {
      metadata: { annotations: { [CLEANED_UP_ANNOTATION]: "true", [WAITING_ANNOTATION]: null } },
    });
    log.info({ placeholders: sets.length, claims: deletedClaims }, "run finished; cleaned up");
    const claimsNote = deletedClaims.length ? ` and PVC(s) ${deletedClaims.join(", ")}` : "";
    this.recordEvent(
      run,
      "Normal",
      "CleanedUp",
      `run finished: deleted ${sets.length} placeholder(s)${claimsNote}`,
    );
    return {};
  }

  /** Deletes the run's placeholder StatefulSets (from the cache; a no-op when there are none). */
  private async deletePlaceholders(run: PipelineRun): Promise<V1StatefulSet[]> {
    const ns = run.metadata.namespace;
    const sets = this.o.caches.placeholderSets
      .list(ns)
      .filter((s) => s.metadata?.labels?.[PLACEHOLDER_RUN_UID_LABEL] === run.metadata.uid);
    for (const set of sets) {
      await this.o.clients.apps
        .deleteNamespacedStatefulSet({
          name: set.metadata!.name!,
          namespace: ns,
          body: { preconditions: { uid: set.metadata?.uid }, propagationPolicy: "Background" },
        })
        .catch(ignoreGone);
    }
    return sets;
  }

  /** PVCs from volumeClaimTemplate workspaces: always in pipelineruns and isolate-pipelinerun modes; in
   * workspaces mode only with tekton.dev/auto-cleanup-pvc: "true" (exactly). User PVCs: never. */
  private async cleanUpClaims(run: PipelineRun, mode: Mode): Promise<string[]> {
    const wanted =
      mode !== "workspaces" || run.metadata.annotations?.[AUTO_CLEANUP_PVC_ANNOTATION] === "true";
    if (!wanted) return [];
    const deleted: string[] = [];
    for (const ws of run.spec.workspaces ?? []) {
      if (!ws.volumeClaimTemplate) continue;
      const meta = ws.volumeClaimTemplate.metadata as { name?: string } | undefined;
      const name = tektonClaimName(meta?.name, ws.name, run.metadata.uid ?? "");
      try {
        const claim = await this.o.clients.core.readNamespacedPersistentVolumeClaim({
          name,
          namespace: run.metadata.namespace,
        });
        // Only a claim this run owns: never one that merely has the same name.
        if (!claim.metadata?.ownerReferences?.some((o) => o.uid === run.metadata.uid)) continue;
        await this.o.clients.core.deleteNamespacedPersistentVolumeClaim({
          name,
          namespace: run.metadata.namespace,
          body: { preconditions: { uid: claim.metadata.uid } },
        });
        deleted.push(name);
      } catch (err) {
        if (!isNotFound(err)) throw err;
      }
    }
    return deleted;
  }

  /** Fenced by the resourceVersion we read: a 409 means our view was stale; the job retries. */
  private async patchRun(run: PipelineRun, body: { metadata?: object; spec?: object }): Promise<void> {
    this.o.onRunWritten?.(await patchRunFenced(this.o.clients.custom, run, body));
  }
}

function ignoreAlreadyExists(err: unknown): void {
  if (!isConflict(err)) throw err;
}

function ignoreGone(err: unknown): void {
  const code = statusCode(err);
  if (code !== 404 && code !== 409) throw err;
}
