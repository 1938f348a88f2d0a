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
// Decide, then act. The decisions live in run-decisions.ts: pure functions, unit-tested without a
// cluster (test/unit/run-decisions.test.ts). A reconcile here gathers what the caches say into a
// RunObservation (observe), asks decideRun, then decideGate once the creates were tried, for a list of
// RunActions, and performs them in order (execute). Only what the apiserver alone can answer is asked
// here: whether a create was refused, whether a claim's volume is pinned to its node, who owns a claim,
// and (there is no claim cache) the access modes of the run's user PVCs, read while it is active.
//
// Every step is idempotent and every write to the run is fenced by resourceVersion, so a job that runs
// twice, late, or on two replicas at once cannot do harm.

import type {
  CoreV1Event,
  V1Node,
  V1PersistentVolume,
  V1PersistentVolumeClaim,
  V1Pod,
  V1StatefulSet,
} from "@kubernetes/client-node";
import type { Logger } from "pino";
import {
  CLEANED_UP_ANNOTATION,
  DEFAULT_TEKTON_RESOLVERS_NAMESPACE,
  DEFAULT_TOPOLOGY_KEY,
  EVICTED_AT_ANNOTATION,
  EVICTED_FROM_ANNOTATION,
  GATED_ANNOTATION,
  MANAGED_LABEL,
  PLACED_ON_ANNOTATION,
  PLACEHOLDER_RUN_UID_LABEL,
  RELEASED,
  RELEASED_UNCOSCHEDULED_ANNOTATION,
  SHARED_CLAIMS_ANNOTATION,
  TEKTON_GROUP,
  TEKTON_VERSION,
  WAITING_ANNOTATION,
} from "../api/constants.js";
import { effectiveSpec } from "../api/effective-spec.js";
import { capReservation, DEFAULT_TENANCY_LIMITS, type TenancyLimits } from "../api/tenancy.js";
import type { AffinityPolicySpec, PipelineRun } from "../api/types.js";
import {
  apiMessage,
  isConflict,
  isNotFound,
  type KubeClients,
  orUndefinedIfNotFound,
  statusCode,
} from "../kube/clients.js";
import type { EventRecorder, EventTarget } from "../kube/events.js";
import {
  annotateSetFenced,
  deletePodFenced,
  deleteStatefulSetFenced,
  patchRunFenced,
  patchRunStatusFenced,
  purgeClaim,
} from "../kube/fenced.js";
import type { Caches } from "../kube/informers.js";
import type { TektonDefaults } from "../kube/tekton-defaults.js";
import type { TektonFlags } from "../kube/tekton-flags.js";
import type { Metrics } from "../metrics.js";
import {
  isSingleNodeClaim,
  type PlaceholderPlan,
  planPlaceholders,
  runClaims,
  type VolumeRequirement,
  volumeRequirements,
} from "../placement/plan.js";
import { NO_ROOM, reservationName, reservesLargestTask } from "../placement/reservation.js";
import { ownRequiredPodAffinity } from "../placement/run-placement.js";
import { isNodeWide } from "../placement/statefulset.js";
import { concurrentPeak } from "../placement/task-dag.js";
import {
  type ClusterResolverConfig,
  clusterResolverRefusal,
  limitRangeDefaults,
  type PipelineSpec,
  pipelineSource,
  pipelineTasks,
  type Resources,
  type SourceRef,
  type TaskSpec,
  taskPodRequests,
  taskRunSpecFor,
  taskSource,
} from "../placement/task-resources.js";
import type { ReconcileResult } from "../queue/work-queue.js";
import { nodeProblem } from "./node-health.js";
import type { NodeTracker } from "./node-tracker.js";
import {
  claimsMatter,
  currentPod,
  decideGate,
  decideRun,
  gatedSince,
  isGated,
  type PlaceholderObservation,
  pinnedCannotMigrate,
  pinnedNode,
  type RunAction,
  type RunActionOf,
  type RunObservation,
} from "./run-decisions.js";

/** Tekton's cluster resolver's settings (its namespace rules), in its resolvers' namespace. */
const CLUSTER_RESOLVER_CONFIG = "cluster-resolver-config";

/** The Succeeded=False reason of a run that waited past maxWait (onMaxWait: Fail). */
export const MAX_WAIT_EXCEEDED_REASON = "AffinityMaxWaitExceeded";
/** The run's Succeeded=False reason when no placement can satisfy it (a task binds two claims held apart). */
export const UNSATISFIABLE_REASON = "AffinityUnsatisfiable";

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
  /** Tekton's config-defaults pod template for its assistants: the placeholders' lowest layer. */
  tektonDefaults?: TektonDefaults;
  /** Namespace of Tekton's resolvers, whose cluster-resolver-config bounds what a cluster-resolver
   * reference may read. Default tekton-pipelines-resolvers. */
  tektonResolversNamespace?: string;
  /** The operator's bounds (topologyKey, priority, image, resources, maxWait, isolation groups). */
  tenancy?: TenancyLimits;
  /** Milliseconds of [from, to] (this replica's clock) during which no replica could act (Redis down, or
   * before this replica started): a gated run's maxWait does not count them. Default: none. */
  unavailableMs?: (fromMs: number, toMs: number) => number;
  /** Told the run as our own write left it, so its watch event does not come back as new work. */
  onRunWritten?: (run: PipelineRun) => void;
}

/** The service account the run's pods run as (Tekton's default when the run names none). */
function runServiceAccount(run: PipelineRun): string {
  return run.spec.taskRunTemplate?.serviceAccountName || "default";
}

/** Why another namespace's object is not read for a run: says only what the run itself named. */
function notReadable(run: PipelineRun, kind: string, ref: { name: string; namespace: string }): string {
  return `${kind} ${ref.namespace}/${ref.name} is in another namespace, and the run's service account (${runServiceAccount(run)}) may not get it`;
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

/** What executing a reconcile's actions has learned so far. */
interface Execution {
  /** The first refusal of a create, for the run to show (decideGate). */
  refused?: string;
  /** Plans whose claim was refused: their placeholder is neither created nor replaced this time. */
  claimRefused: Set<string>;
  /** Plans whose StatefulSet this reconcile created (not one that already existed). */
  created: Set<string>;
  /** The run's user PVCs as observe read them (undefined: not found), so they are not read twice. */
  claims: ReadonlyMap<string, V1PersistentVolumeClaim | undefined>;
  requeueAfterMs?: number;
}

/** A run's user PVCs, by name, as read (undefined: not found). */
type ReadClaims = Map<string, V1PersistentVolumeClaim | undefined>;

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
    const { obs, claims } = await this.observe(run);
    const log = this.o.logger.child({ namespace, name, uid: run.metadata.uid });
    const x: Execution = { claimRefused: new Set(), created: new Set(), claims };
    await this.execute(run, decideRun(obs), x, log);
    // The gate needs to know whether a create was refused just now: that refusal is what the run shows.
    await this.execute(run, decideGate(obs, x.refused), x, log);
    return x.requeueAfterMs === undefined ? {} : { requeueAfterMs: x.requeueAfterMs };
  }

  // ---- observe ----

  private async observe(run: PipelineRun): Promise<{ obs: RunObservation; claims: ReadClaims }> {
    const { caches } = this.o;
    const ns = run.metadata.namespace;
    const spec = effectiveSpec(
      run,
      (namespace, name) => caches.policies.get(name, namespace),
      this.o.clusterDefault,
      this.limits,
    );
    // The placeholder must not mount a ReadWriteOncePod claim, and only single-node claims keep it on a
    // NotReady node: the plans need each claim's access modes (a template's are in the run).
    const claims: ReadClaims = claimsMatter(run, spec) ? await this.readUserClaims(run) : new Map();
    const accessModes = Object.fromEntries([...claims].map(([name, c]) => [name, c?.spec?.accessModes]));
    // After the reads, so the observation's time is not older than what it holds.
    const now = Date.now();
    const plans = spec ? planPlaceholders(run, spec.mode, accessModes, spec.coscheduledClaims) : [];
    // Sharing a zone, a placeholder does not mount single-node claims: it follows their volumes.
    if (spec && !isNodeWide(spec) && claims.size) {
      for (const plan of plans) plan.volumeAffinity = await this.volumeAffinity(plan, claims);
    }
    const placeholders = plans.map((plan): PlaceholderObservation => {
      // StatefulSet pods are named <set>-0.
      const set = caches.placeholderSets.get(plan.name, ns);
      const p: PlaceholderObservation = {
        plan,
        set,
        pod: caches.placeholderPods.get(`${plan.name}-0`, ns),
        failedCreates: [],
      };
      const uid = set?.metadata?.uid;
      // FailedCreate events only matter while the set has no pod of its own.
      if (uid && !currentPod(p)) {
        p.failedCreates = caches.failedCreates.list(ns).filter((e) => e.involvedObject.uid === uid);
      }
      if (reservesLargestTask(spec)) p.reservation = this.observeReservation(plan, ns);
      return p;
    });
    // The largest task is resolved only while a reservation is still to be made (its size is then fixed).
    const reserve =
      reservesLargestTask(spec) &&
      claimsMatter(run, spec) &&
      isGated(run) &&
      placeholders.some((p) => !p.reservation?.set)
        ? await this.resolveReservation(run)
        : undefined;
    const nodes: RunObservation["nodes"] = {};
    const troubleSince: RunObservation["troubleSince"] = {};
    for (const p of placeholders) {
      const nodeName = currentPod(p)?.spec?.nodeName;
      if (!nodeName) continue;
      const node = caches.nodes.get(nodeName);
      if (node) nodes[nodeName] = node;
      troubleSince[nodeName] = this.o.nodeTracker.troubleSince(nodeName, now);
    }
    const domainNodes = spec && !isNodeWide(spec) ? this.domainNodes(spec, nodes, now) : undefined;
    const group = caches.namespaces.get(ns)?.metadata?.labels?.[this.limits.isolationGroupLabel];
    const conflict = this.o.tektonFlags.conflict();
    const tektonDefaults = this.o.tektonDefaults?.template();
    const obs: RunObservation = {
      ...(tektonDefaults ? { tektonDefaults } : {}),
      run,
      spec,
      placeholders,
      ...(group ? { isolationGroup: group } : {}),
      nodes,
      troubleSince,
      ...(domainNodes ? { domainNodes } : {}),
      ...(reserve ? { reserve } : {}),
      ...(conflict ? { tektonConflict: conflict } : {}),
      now,
      // Over the span maxWait counts (decideGate): outages before it are not waiting time anyway.
      unavailableMs: this.o.unavailableMs?.(gatedSince(run, now), now) ?? 0,
      options: {
        limits: this.limits,
        notReadyGraceMs: this.notReadyGraceMs,
        settlePeriodMs: this.settlePeriodMs,
        waitRequeueMs: this.waitRequeueMs,
      },
    };
    return { obs, claims };
  }

  /** Reads the run's user PVCs (persistentVolumeClaim workspaces; template claims are ours and their
   * spec is in the run). Not found: undefined, access modes unknown. Other errors are thrown, for a retry. */
  /** A plan's reservation set and pod from the caches (they hold reservations too), and the set's
   * FailedCreate events while it has no pod. */
  private observeReservation(
    plan: PlaceholderPlan,
    ns: string,
  ): NonNullable<PlaceholderObservation["reservation"]> {
    const name = reservationName(plan);
    const set = this.o.caches.placeholderSets.get(name, ns);
    const r = {
      set,
      pod: this.o.caches.placeholderPods.get(`${name}-0`, ns),
      failedCreates: [] as CoreV1Event[],
    };
    this.countPreemption(r.pod);
    const uid = set?.metadata?.uid;
    if (uid && !currentPod({ plan, ...r })) {
      r.failedCreates = this.o.caches.failedCreates.list(ns).filter((e) => e.involvedObject.uid === uid);
    }
    return r;
  }

  /** Reservation pods preempted, each counted once (by uid) however many reconciles see it. */
  private readonly preempted = new Set<string>();
  private countPreemption(pod: V1Pod | undefined): void {
    const uid = pod?.metadata?.uid;
    const byScheduler = pod?.status?.conditions?.some(
      (c) => c.type === "DisruptionTarget" && c.status === "True" && c.reason === "PreemptionByScheduler",
    );
    if (!uid || !byScheduler || this.preempted.has(uid)) return;
    if (this.preempted.size > 10_000) this.preempted.clear();
    this.preempted.add(uid);
    this.o.metrics.reservationPreemptions.inc();
  }

  /**
   * What the run's task pods need at once (task-dag.ts: per resource, the heaviest set of tasks its DAG may
   * run in parallel; sized by task-resources.ts), from its inline specs or the Pipeline and Task objects
   * it references (read from the API: only while a reservation is to be made), with the namespace's
   * LimitRange defaults and the run's taskRunSpecs; or why it cannot be known.
   */
  private async resolveReservation(run: PipelineRun): Promise<NonNullable<RunObservation["reserve"]>> {
    const ns = run.metadata.namespace;
    const fallBack = (why: string) => ({
      unresolvable: `${why}: reserve: LargestTask falls back to None for this run`,
    });
    let resolverConfig: ClusterResolverConfig | undefined;
    const read = async (plural: "pipelines" | "tasks", { name, namespace, resolver }: SourceRef) => {
      // Through the cluster resolver, only what Tekton's resolver would read: its namespace rules.
      if (resolver === "cluster") {
        try {
          resolverConfig ??= await this.clusterResolverConfig();
        } catch (err) {
          return { refusal: `the cluster resolver's settings could not be read (${(err as Error).message})` };
        }
        const refusal = clusterResolverRefusal(namespace, resolverConfig);
        if (refusal) return { refusal };
      }
      // Another namespace's Task or Pipeline is read for the run only if the run itself may read it: its
      // service account, as Tekton would run it. Otherwise our identity would read, and the run's events
      // and reservation would show, what its namespace may not see.
      if (namespace !== ns && !(await this.runMayRead(run, plural, name, namespace)))
        return "forbidden" as const;
      const read = this.o.clients.custom.getNamespacedCustomObject({
        group: TEKTON_GROUP,
        version: TEKTON_VERSION,
        plural,
        namespace,
        name,
      });
      return (await orUndefinedIfNotFound(read)) as { spec?: unknown } | undefined;
    };
    // The scheduler needs one pod to match every required pod affinity term: a reservation (and its
    // placeholder, which must join it) cannot both be beside each other and beside the run's target.
    if (ownRequiredPodAffinity(run).length)
      return fallBack(
        "the run's pod templates carry a required pod affinity of their own, which a reservation cannot be combined with",
      );
    const pipeline = pipelineSource(run);
    if ("unresolvable" in pipeline) return { unresolvable: pipeline.unresolvable };
    let spec: PipelineSpec;
    if ("inline" in pipeline) spec = pipeline.inline;
    else {
      const found = await read("pipelines", pipeline.ref);
      if (found === "forbidden") return fallBack(notReadable(run, "Pipeline", pipeline.ref));
      if (found && "refusal" in found)
        return fallBack(`the run's pipelineRef: ${found.refusal} (${this.clusterResolverConfigName()})`);
      if (!found?.spec)
        return fallBack(`Pipeline ${pipeline.ref.namespace}/${pipeline.ref.name} was not found`);
      spec = found.spec as PipelineSpec;
    }
    const limitRange = limitRangeDefaults(
      (await this.o.clients.core.listNamespacedLimitRange({ namespace: ns })).items,
    );
    const tasks: { name: string; requests: Resources }[] = [];
    for (const pt of pipelineTasks(spec)) {
      const source = taskSource(pt, ns);
      if ("unresolvable" in source) return { unresolvable: source.unresolvable };
      let taskSpec: TaskSpec;
      if ("inline" in source) taskSpec = source.inline;
      else {
        const found = await read("tasks", source.ref);
        if (found === "forbidden") return fallBack(notReadable(run, "Task", source.ref));
        if (found && "refusal" in found)
          return fallBack(`task ${pt.name}: ${found.refusal} (${this.clusterResolverConfigName()})`);
        if (!found?.spec)
          return fallBack(`Task ${source.ref.namespace}/${source.ref.name} (task ${pt.name}) was not found`);
        taskSpec = found.spec as TaskSpec;
      }
      try {
        const taskRunSpec = taskRunSpecFor(run, pt.name);
        tasks.push({
          name: pt.name,
          requests: taskPodRequests(taskSpec, {
            ...(limitRange ? { limitRange } : {}),
            ...(taskRunSpec ? { taskRunSpec } : {}),
          }),
        });
      } catch (err) {
        return fallBack(`task ${pt.name}: ${(err as Error).message}`);
      }
    }
    // Tasks that may run at once need their sum (task-dag.ts).
    const largest = concurrentPeak(tasks, spec);
    if (!largest) return fallBack("the run has no tasks");
    // Bounded like every resource we hold for a tenant: past the operator's ceiling it holds less.
    const { requests, capped } = capReservation(largest.requests, this.limits);
    const task = capped
      ? `${largest.name} (capped by the operator's --max-reservation-resources)`
      : largest.name;
    return { reservation: { task, requests } };
  }

  private clusterResolverConfigName(): string {
    return `ConfigMap ${this.o.tektonResolversNamespace ?? DEFAULT_TEKTON_RESOLVERS_NAMESPACE}/${CLUSTER_RESOLVER_CONFIG}`;
  }

  /** Tekton's cluster resolver's settings; none when the ConfigMap is absent (the resolver then reads any
   * namespace). Read only for a run that references something through the cluster resolver. */
  private async clusterResolverConfig(): Promise<ClusterResolverConfig> {
    const read = this.o.clients.core.readNamespacedConfigMap({
      name: CLUSTER_RESOLVER_CONFIG,
      namespace: this.o.tektonResolversNamespace ?? DEFAULT_TEKTON_RESOLVERS_NAMESPACE,
    });
    return ((await orUndefinedIfNotFound(read))?.data ?? {}) as ClusterResolverConfig;
  }

  /** Whether the run's service account may get this Task or Pipeline (a SubjectAccessReview). */
  private async runMayRead(run: PipelineRun, plural: "pipelines" | "tasks", name: string, namespace: string) {
    const ns = run.metadata.namespace;
    const review = await this.o.clients.authorization.createSubjectAccessReview({
      body: {
        apiVersion: "authorization.k8s.io/v1",
        kind: "SubjectAccessReview",
        spec: {
          user: `system:serviceaccount:${ns}:${runServiceAccount(run)}`,
          groups: ["system:serviceaccounts", `system:serviceaccounts:${ns}`, "system:authenticated"],
          resourceAttributes: { group: TEKTON_GROUP, resource: plural, verb: "get", namespace, name },
        },
      },
    });
    return review.status?.allowed === true;
  }

  /** For placeholder nodes that look unusable (any problem, tolerations aside), the other nodes of their
   * topology domain: migration moves a zone-wide placeholder only when its whole domain is unusable. */
  private domainNodes(spec: AffinityPolicySpec, nodes: Record<string, V1Node>, now: number) {
    const key = spec.topologyKey ?? DEFAULT_TOPOLOGY_KEY;
    const out: Record<string, V1Node[]> = {};
    for (const [name, node] of Object.entries(nodes)) {
      const value = node.metadata?.labels?.[key];
      if (!value || !nodeProblem(node, [], now, 0)) continue;
      out[name] = this.o.caches.nodes
        .list()
        .filter((n) => n.metadata?.name !== name && n.metadata?.labels?.[key] === value);
    }
    return out;
  }

  /** The node requirements of the bound volumes of the plan's single-node claims (read from the API). */
  private async volumeAffinity(plan: PlaceholderPlan, claims: ReadClaims): Promise<VolumeRequirement[]> {
    const requirements: VolumeRequirement[] = [];
    for (const c of plan.claims.filter(isSingleNodeClaim)) {
      const volumeName = claims.get(c.name)?.spec?.volumeName;
      if (!volumeName) continue;
      try {
        requirements.push(
          ...volumeRequirements(await this.o.clients.core.readPersistentVolume({ name: volumeName })),
        );
      } catch (err) {
        if (!isNotFound(err)) throw err;
      }
    }
    return requirements;
  }

  private async readUserClaims(run: PipelineRun): Promise<ReadClaims> {
    const names = runClaims(run)
      .filter((c) => !c.template)
      .map((c) => c.name);
    const read = await Promise.all(
      names.map(async (name): Promise<[string, V1PersistentVolumeClaim | undefined]> => {
        try {
          const claim = await this.o.clients.core.readNamespacedPersistentVolumeClaim({
            name,
            namespace: run.metadata.namespace,
          });
          return [name, claim];
        } catch (err) {
          if (isNotFound(err)) return [name, undefined];
          throw err;
        }
      }),
    );
    return new Map(read);
  }

  // ---- act ----

  private async execute(run: PipelineRun, actions: RunAction[], x: Execution, log: Logger): Promise<void> {
    for (const a of actions) {
      switch (a.type) {
        case "createClaim": {
          const refusal = await this.createClaim(run, a.plan, a.claim);
          if (refusal) {
            x.claimRefused.add(a.plan);
            x.refused ??= refusal;
          }
          break;
        }
        case "createPlaceholder": {
          if (x.claimRefused.has(a.plan)) break;
          // Not `x.refused ??= await ...`: that would skip the create once an earlier one was refused.
          const { created, refusal } = await this.createPlaceholder(run, a.plan, a.set);
          if (created) x.created.add(a.plan);
          x.refused ??= refusal;
          break;
        }
        case "createReservation": {
          const { created, refusal } = await this.createPlaceholder(
            run,
            a.set.metadata!.name!,
            a.set,
            "reservation",
          );
          if (created) {
            this.o.metrics.reservations.inc();
            this.o.metrics.reservedCpu.observe(a.reservation.requests.cpuMillis / 1000);
            this.o.metrics.reservedMemory.observe(a.reservation.requests.memoryBytes);
          }
          x.refused ??= refusal;
          break;
        }
        case "priorityClassIgnored":
          if (x.created.has(a.plan)) this.recordEvent(run, "Warning", "PriorityClassIgnored", a.message);
          break;
        case "reserveUnresolved":
          if (x.created.has(a.plan)) this.recordEvent(run, "Warning", "ReserveUnresolved", a.message);
          break;
        case "claimNotMounted":
          if (x.created.has(a.plan)) this.recordEvent(run, "Normal", "ClaimNotMounted", a.message);
          break;
        case "replacePlaceholder":
          if (!x.claimRefused.has(a.plan)) await this.replacePlaceholder(run, a, log);
          break;
        case "reportArrival":
          await this.reportArrival(run, a);
          break;
        case "evict":
          await this.evictUnlessPinned(run, a, x, log);
          break;
        case "cannotMigrate":
          this.recordEvent(run, "Warning", "CannotMigrate", a.message);
          break;
        case "releaseGate":
          await this.releaseGate(run, a, log);
          break;
        case "setWaiting":
          await this.patchRun(run, { metadata: { annotations: { [WAITING_ANNOTATION]: a.reason } } });
          this.recordEvent(run, "Warning", "Waiting", a.reason);
          if (a.reason.startsWith(NO_ROOM)) this.o.metrics.reservationUnfit.inc();
          break;
        case "failRun":
          await this.failRun(run, a, log);
          break;
        case "deletePlaceholders":
          await this.deletePlaceholders(run);
          break;
        case "releaseWithoutCoscheduling":
          await this.releaseWithoutCoscheduling(run, a, log);
          break;
        case "cleanUp":
          await this.cleanUp(run, a.claims, log);
          break;
        case "requeueAfter":
          x.requeueAfterMs = Math.min(x.requeueAfterMs ?? a.ms, a.ms);
          break;
        default: {
          const unknown: never = a;
          throw new Error(`unknown run action ${JSON.stringify(unknown)}`);
        }
      }
    }
  }

  // ---- placement ----

  /** Creates a template claim. Returns what the apiserver said when it refused it, for the run to show;
   * throws on errors worth a retry. */
  private async createClaim(
    run: PipelineRun,
    plan: string,
    claim: V1PersistentVolumeClaim,
  ): Promise<string | undefined> {
    const ns = run.metadata.namespace;
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
        return `placeholder ${plan} cannot be created: PersistentVolumeClaim ${claim.metadata?.name} was refused: ${apiMessage(err)}`;
      }
    }
    return undefined;
  }

  /** Creates a placeholder StatefulSet; returns whether this call created it, and the refusal, as
   * createClaim does. */
  private async createPlaceholder(
    run: PipelineRun,
    plan: string,
    desired: V1StatefulSet,
    what: "placeholder" | "reservation" = "placeholder",
  ): Promise<{ created: boolean; refusal?: string }> {
    const ns = run.metadata.namespace;
    try {
      await this.o.clients.apps.createNamespacedStatefulSet({ namespace: ns, body: desired });
    } catch (err) {
      if (!isRefusal(err)) {
        ignoreAlreadyExists(err);
        return { created: false };
      }
      // Our cache may lag behind a set we created, and a full quota answers 403 before "exists".
      if (
        await this.exists(() => this.o.clients.apps.readNamespacedStatefulSet({ name: plan, namespace: ns }))
      )
        return { created: false };
      this.o.metrics.placeholderRefused.inc({ kind: "StatefulSet" });
      return {
        created: false,
        refusal: `${what} ${plan} cannot be created: StatefulSet was refused: ${apiMessage(err)}`,
      };
    }
    return { created: true };
  }

  private async replacePlaceholder(
    run: PipelineRun,
    { plan, set }: RunActionOf<"replacePlaceholder">,
    log: Logger,
  ): Promise<void> {
    await deleteStatefulSetFenced(this.o.clients.apps, {
      ...set,
      metadata: { ...set.metadata, name: plan, namespace: run.metadata.namespace },
    });
    log.info({ placeholder: plan }, "placeholder no longer matches its policy; recreating it");
    this.recordEvent(
      run,
      "Normal",
      "PlaceholderUpdated",
      `placeholder ${plan} no longer matches its policy; recreating it with the new settings`,
    );
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

  // ---- the gate ----

  private async releaseGate(
    run: PipelineRun,
    { nodes, message, tektonConflict, sharedClaims }: RunActionOf<"releaseGate">,
    log: Logger,
  ): Promise<void> {
    await this.patchRun(run, {
      metadata: {
        annotations: {
          [GATED_ANNOTATION]: null,
          [WAITING_ANNOTATION]: null,
          [PLACED_ON_ANNOTATION]: nodes.join(","),
          // With the release, in one write: the pods webhook must know it before the first task pod.
          [SHARED_CLAIMS_ANNOTATION]: sharedClaims?.length ? sharedClaims.join(",") : null,
        },
      },
      spec: { status: null },
    });
    if (tektonConflict) this.recordEvent(run, "Warning", "TektonAffinityAssistantEnabled", tektonConflict);
    const seconds = (Date.now() - new Date(run.metadata.creationTimestamp ?? Date.now()).getTime()) / 1000;
    this.o.metrics.placementLatency.observe(seconds);
    log.info({ nodes, seconds }, "placeholder scheduled; run released");
    this.recordEvent(run, "Normal", "Placed", message);
  }

  /** onMaxWait: Fail. The run ends as Tekton would end it, with our reason and the last scheduler reason:
   * Tekton leaves a run alone once its Succeeded condition is False. The next reconcile cleans up. */
  private async failRun(run: PipelineRun, a: RunActionOf<"failRun">, log: Logger): Promise<void> {
    const now = new Date().toISOString();
    const maxWait = a.cause === "maxWait";
    await patchRunStatusFenced(this.o.clients.custom, run, {
      completionTime: now,
      conditions: [
        {
          type: "Succeeded",
          status: "False",
          reason: maxWait ? MAX_WAIT_EXCEEDED_REASON : UNSATISFIABLE_REASON,
          message: a.message,
          lastTransitionTime: now,
        },
      ],
    });
    if (maxWait) this.o.metrics.maxWaitExceeded.inc({ action: "fail" });
    log.info({ message: a.message, cause: a.cause }, "failed the run");
    this.recordEvent(run, "Warning", maxWait ? "MaxWaitExceeded" : "Unsatisfiable", a.message);
  }

  /** onMaxWait: Release. The run is no longer ours: its label goes (so its pods get no affinity), its
   * gate is cleared; its placeholders were deleted just before (and again by later jobs, should this
   * one stop). */
  private async releaseWithoutCoscheduling(
    run: PipelineRun,
    a: RunActionOf<"releaseWithoutCoscheduling">,
    log: Logger,
  ): Promise<void> {
    await this.patchRun(run, {
      metadata: {
        labels: { [MANAGED_LABEL]: RELEASED },
        annotations: {
          [GATED_ANNOTATION]: null,
          [WAITING_ANNOTATION]: null,
          [RELEASED_UNCOSCHEDULED_ANNOTATION]: a.message,
        },
      },
      spec: { status: null },
    });
    if (a.cause === "maxWait") this.o.metrics.maxWaitExceeded.inc({ action: "release" });
    log.info({ message: a.message, cause: a.cause }, "released the run without co-scheduling");
    this.recordEvent(run, "Warning", "ReleasedWithoutCoscheduling", a.message);
  }

  /** Events are for people; a reconcile does not wait for them (the recorder logs its own failures). */
  private recordEvent(run: PipelineRun, type: "Normal" | "Warning", reason: string, message: string): void {
    void this.o.events.record(runTarget(run), type, reason, message);
  }

  // ---- migration off nodes that can no longer hold a placeholder ----

  private async evictUnlessPinned(
    run: PipelineRun,
    a: RunActionOf<"evict">,
    x: Execution,
    log: Logger,
  ): Promise<void> {
    for (const claimName of a.claimNames) {
      const pinned = await this.volumePinnedTo(run, claimName, a.nodeName, x.claims);
      if (pinned) {
        this.recordEvent(run, "Warning", "CannotMigrate", pinnedCannotMigrate(a, claimName, pinned).message);
        return;
      }
    }
    await this.evict(run, a, log);
  }

  /** Reads the claim (unless observe did) and its PV for pinnedNode (not found: not pinned). */
  private async volumePinnedTo(
    run: PipelineRun,
    claimName: string,
    nodeName: string,
    read: ReadonlyMap<string, V1PersistentVolumeClaim | undefined>,
  ): Promise<string | undefined> {
    try {
      const claim = read.has(claimName)
        ? read.get(claimName)
        : await this.o.clients.core.readNamespacedPersistentVolumeClaim({
            name: claimName,
            namespace: run.metadata.namespace,
          });
      if (!claim?.spec?.volumeName) return undefined;
      const pv: V1PersistentVolume = await this.o.clients.core.readPersistentVolume({
        name: claim.spec.volumeName,
      });
      return pinnedNode(claim, pv, nodeName);
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  private async evict(
    run: PipelineRun,
    {
      set,
      pod,
      reservationPod,
      nodeName,
      problem: { reason, message },
      holdsSingleNodeClaim,
    }: RunActionOf<"evict">,
    log: Logger,
  ): Promise<void> {
    // Record where it came from first (fenced), so the arrival can be reported even by another replica.
    // The time is when the eviction is made, not when it was decided.
    await annotateSetFenced(this.o.clients.apps, set, {
      [EVICTED_FROM_ANNOTATION]: nodeName,
      [EVICTED_AT_ANNOTATION]: String(Date.now()),
    });
    // Delete the pod, never the StatefulSet: its controller recreates the pod on a usable node. The uid
    // precondition makes a late duplicate of this job harmless. A placeholder that mounts no
    // ReadWriteOnce claim (none, or only ReadWriteMany/ReadOnlyMany ones, which two nodes may use at
    // once) is force-deleted (its node may be gone or NotReady). One with a ReadWriteOnce claim is
    // deleted the normal way (its grace period is 0): its node is up here (NotReady keeps it there:
    // CannotMigrate), and its kubelet confirms the container is gone, so the StatefulSet never runs two
    // pods on one ReadWriteOnce volume. A node object that is gone has no kubelet left to confirm
    // anything (whoever deleted it vouched for it, as the CannotMigrate event asks): waiting for a
    // confirmation would only wait for pod garbage collection.
    const holdsClaim = holdsSingleNodeClaim && reason !== "Gone";
    const inRun = (p: V1Pod): V1Pod => ({
      ...p,
      metadata: { ...p.metadata, namespace: run.metadata.namespace },
    });
    await deletePodFenced(this.o.clients.core, inRun(pod), holdsClaim ? {} : { gracePeriodSeconds: 0 });
    // Its reservation holds no volume: it goes at once, so the pair lands again together.
    if (reservationPod)
      await deletePodFenced(this.o.clients.core, inRun(reservationPod), { gracePeriodSeconds: 0 });
    this.o.metrics.evictions.inc({ reason });
    log.info({ node: nodeName, reason }, "placeholder evicted");
    this.recordEvent(
      run,
      "Normal",
      "Migrating",
      `${message}: moving placeholder ${set.metadata?.name} off it; running tasks finish where they are, later ones follow the placeholder`,
    );
  }

  private async reportArrival(
    run: PipelineRun,
    { set, from, to }: RunActionOf<"reportArrival">,
  ): Promise<void> {
    // A conflict (the StatefulSet controller updated the set's status since our cache saw it, or another
    // replica reported the arrival) is thrown: the job is retried from fresh state, which reports it or
    // finds it reported. Waiting for "the next job" instead lost the report: the set's status updates
    // are no news, so no next job may come (found with pods that wait on a volume attach).
    await annotateSetFenced(this.o.clients.apps, set, { [EVICTED_FROM_ANNOTATION]: null });
    this.recordEvent(
      run,
      "Normal",
      "Migrated",
      `placeholder ${set.metadata?.name} moved from node ${from} to node ${to}`,
    );
  }

  // ---- completion ----

  private async cleanUp(run: PipelineRun, claims: string[], log: Logger): Promise<void> {
    const sets = await this.deletePlaceholders(run);
    const deletedClaims = await this.deleteOwnedClaims(run, claims);
    await this.patchRun(run, {
      metadata: { annotations: { [CLEANED_UP_ANNOTATION]: "true", [WAITING_ANNOTATION]: null } },
    });
    log.info({ placeholders: sets, claims: deletedClaims }, "run finished; cleaned up");
    const claimsNote = deletedClaims.length ? ` and PVC(s) ${deletedClaims.join(", ")}` : "";
    this.recordEvent(run, "Normal", "CleanedUp", `run finished: deleted ${sets} placeholder(s)${claimsNote}`);
  }

  /** Deletes the run's placeholder StatefulSets (from the cache; a no-op when there are none); returns
   * how many there were. */
  private async deletePlaceholders(run: PipelineRun): Promise<number> {
    const ns = run.metadata.namespace;
    const sets = this.o.caches.placeholderSets
      .list(ns)
      .filter((s) => s.metadata?.labels?.[PLACEHOLDER_RUN_UID_LABEL] === run.metadata.uid);
    for (const set of sets) {
      await deleteStatefulSetFenced(this.o.clients.apps, {
        ...set,
        metadata: { ...set.metadata, namespace: ns },
      });
    }
    return sets.length;
  }

  /** Deletes those of the named claims the run owns, protection finalizer and all; returns their names. */
  private async deleteOwnedClaims(run: PipelineRun, names: string[]): Promise<string[]> {
    const deleted: string[] = [];
    for (const name of names) {
      try {
        const claim = await this.o.clients.core.readNamespacedPersistentVolumeClaim({
          name,
          namespace: run.metadata.namespace,
        });
        // Only a claim this run owns: never one that merely has the same name.
        if (!claim.metadata?.ownerReferences?.some((o) => o.uid === run.metadata.uid)) continue;
        // Gone, not Terminating: its protection finalizer goes too (a conflict retries the job).
        await purgeClaim(this.o.clients.core, claim);
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
