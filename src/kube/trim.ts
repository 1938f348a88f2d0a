// What the informer caches keep of each object: only the fields a reconciler or webhook reads.
//
// A cluster of thousands of nodes is where the controller must stay small. A Node object is mostly
// what we never read (the images it holds, addresses, node info, every condition's heartbeat), and
// every object carries managedFields; a replica that cached them whole would grow with the cluster's
// size and churn rather than with its own work. Trimming happens before an object enters the cache,
// so a watch event never holds the full object longer than its parse.

import * as k8s from "@kubernetes/client-node";
import { CLEANED_UP_ANNOTATION, COMPONENT_LABEL, GROUP } from "../api/constants.js";

export type Trim<T> = (obj: T) => T;

/** The metadata every cache keeps: identity, the resourceVersion that fences writes and resumes
 * watches, labels, annotations, owners and deletion. managedFields is dropped. */
function trimMeta(meta: k8s.V1ObjectMeta | undefined): k8s.V1ObjectMeta | undefined {
  if (!meta) return meta;
  const { managedFields: _dropped, ...kept } = meta;
  return kept;
}

/** Any object, without managedFields. */
export function withoutManagedFields<T extends k8s.KubernetesObject>(obj: T): T {
  if (!obj.metadata?.managedFields) return obj;
  return { ...obj, metadata: trimMeta(obj.metadata) };
}

/**
 * A Node as the controller reads it: its name and labels (topology), cordon and taints, the Ready
 * condition (NotReady migration, with its transition time for the grace period) and allocatable
 * (whether a node newly fits a waiting run). Annotations are dropped too: nothing of ours reads them,
 * and on real clusters they carry large CSI and CNI payloads.
 */
export function trimNode(node: k8s.V1Node): k8s.V1Node {
  const meta = node.metadata;
  const ready = node.status?.conditions?.find((c) => c.type === "Ready");
  return {
    apiVersion: node.apiVersion,
    kind: node.kind,
    metadata: meta && {
      name: meta.name,
      uid: meta.uid,
      resourceVersion: meta.resourceVersion,
      creationTimestamp: meta.creationTimestamp,
      deletionTimestamp: meta.deletionTimestamp,
      labels: meta.labels,
    },
    spec: node.spec && { unschedulable: node.spec.unschedulable, taints: node.spec.taints },
    status: node.status && {
      allocatable: node.status.allocatable,
      conditions: ready
        ? [
            {
              type: ready.type,
              status: ready.status,
              reason: ready.reason,
              message: ready.message,
              lastTransitionTime: ready.lastTransitionTime,
            },
          ]
        : [],
    },
  };
}

/** kubectl apply's copy of the whole object: nothing of ours reads it, and it doubles a run's size. */
const LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration";

/**
 * A PipelineRun as the controller reads it: metadata (our labels and annotations), the spec it places
 * and sizes, and of the status only the Succeeded condition's list and the start and completion
 * times. Tekton's status is most of a running run's size (the resolved pipelineSpec, provenance with
 * every feature flag, childReferences, results), and the cache holds every managed run of the cluster.
 * Safe because runs are only ever merge-patched, never written whole from the cache.
 */
export function trimRun<
  T extends k8s.KubernetesObject & { spec?: Record<string, unknown>; status?: Record<string, unknown> },
>(run: T): T {
  const meta = trimMeta(run.metadata);
  if (meta?.annotations?.[LAST_APPLIED] !== undefined) {
    const { [LAST_APPLIED]: _dropped, ...annotations } = meta.annotations;
    meta.annotations = annotations;
  }
  const status = run.status;
  // A finished run the controller has cleaned up is only ever read for its marks and its Succeeded
  // condition again; its spec (an inline pipelineSpec can be most of it) is dropped. Clusters keep
  // thousands of finished runs until they are pruned.
  const spec = meta?.annotations?.[CLEANED_UP_ANNOTATION] === "true" && isFinished(status) ? {} : run.spec;
  return {
    ...run,
    metadata: meta,
    ...(spec !== undefined ? { spec } : {}),
    ...(status
      ? {
          status: {
            ...(status.conditions !== undefined ? { conditions: status.conditions } : {}),
            ...(status.startTime !== undefined ? { startTime: status.startTime } : {}),
            ...(status.completionTime !== undefined ? { completionTime: status.completionTime } : {}),
          },
        }
      : {}),
  };
}

/** Whether a run's Succeeded condition says it has finished (True or False). */
function isFinished(status: Record<string, unknown> | undefined): boolean {
  const conditions = status?.conditions as { type?: string; status?: string }[] | undefined;
  const succeeded = conditions?.find((c) => c.type === "Succeeded");
  return succeeded !== undefined && succeeded.status !== "Unknown";
}

/** A Namespace as the controller reads it: its name and labels (the isolation group). */
export function trimNamespace(ns: k8s.V1Namespace): k8s.V1Namespace {
  const meta = ns.metadata;
  return {
    apiVersion: ns.apiVersion,
    kind: ns.kind,
    metadata: meta && {
      name: meta.name,
      uid: meta.uid,
      resourceVersion: meta.resourceVersion,
      labels: meta.labels,
    },
  };
}

/** Applies `trim` to a list's items. */
export function trimList<T extends k8s.KubernetesObject>(
  list: k8s.KubernetesListObject<T>,
  trim: Trim<T>,
): k8s.KubernetesListObject<T> {
  return { ...list, items: list.items.map(trim) };
}

/**
 * A Watch that trims each object of a watch event before the informer caches it. ERROR events carry a
 * Status, not an object of the kind, and BOOKMARKs only a resourceVersion: both pass as they are.
 */
export class TrimmingWatch<T extends k8s.KubernetesObject> extends k8s.Watch {
  constructor(
    config: k8s.KubeConfig,
    private readonly trim: Trim<T>,
  ) {
    super(config);
  }

  override watch(
    path: string,
    queryParams: Record<string, string | number | boolean | undefined>,
    callback: (phase: string, apiObj: unknown, watchObj?: unknown) => void,
    done: (err: unknown) => void,
  ): Promise<AbortController> {
    return super.watch(
      path,
      queryParams,
      (phase, obj, watchObj) => {
        const object =
          phase === "ADDED" || phase === "MODIFIED" || phase === "DELETED" ? this.trim(obj as T) : obj;
        callback(phase, object, watchObj);
      },
      done,
    );
  }
}

// ---- placeholders: what any tenant can imitate ----
//
// The placeholder caches list by our labels, which anyone who can create a StatefulSet or a Pod in their
// namespace can copy onto any object, with megabytes of annotations or tolerations. So they keep only
// what the run reconciler reads (change-filter.ts's fingerprints say what that is): our own labels and
// annotations, the owner that controls it, and of a pod where it is scheduled and why not. A decoy then
// costs a replica a few hundred bytes, not its size.

const OURS = `${GROUP}/`;
/** More tolerations than any placeholder of ours carries (the run's and the policy's, merged). */
const MAX_TOLERATIONS = 64;

function oursOnly(
  map: Record<string, string> | undefined,
  alsoKeep: string[] = [],
): Record<string, string> | undefined {
  if (!map) return map;
  return Object.fromEntries(Object.entries(map).filter(([k]) => k.startsWith(OURS) || alsoKeep.includes(k)));
}

function placeholderMeta(
  meta: k8s.V1ObjectMeta | undefined,
  annotations: boolean,
): k8s.V1ObjectMeta | undefined {
  if (!meta) return meta;
  const controller = meta.ownerReferences?.find((o) => o.controller);
  return {
    name: meta.name,
    namespace: meta.namespace,
    uid: meta.uid,
    resourceVersion: meta.resourceVersion,
    creationTimestamp: meta.creationTimestamp,
    deletionTimestamp: meta.deletionTimestamp,
    labels: oursOnly(meta.labels, [COMPONENT_LABEL]),
    ...(annotations ? { annotations: oursOnly(meta.annotations) } : {}),
    ...(controller ? { ownerReferences: [controller] } : {}),
  };
}

/** A placeholder or reservation StatefulSet: identity, our labels and annotations (template hash, eviction
 * marks, reserved-for), its controlling owner and deletion. Its spec is ours, never read back. */
export function trimPlaceholderSet(set: k8s.V1StatefulSet): k8s.V1StatefulSet {
  return { apiVersion: set.apiVersion, kind: set.kind, metadata: placeholderMeta(set.metadata, true) };
}

/** A placeholder or reservation pod: identity, our labels, its controlling owner, its node and
 * tolerations (migration), and the PodScheduled and DisruptionTarget conditions. */
export function trimPlaceholderPod(pod: k8s.V1Pod): k8s.V1Pod {
  const conditions = (pod.status?.conditions ?? [])
    .filter((c) => c.type === "PodScheduled" || c.type === "DisruptionTarget")
    .map((c) => ({ type: c.type, status: c.status, reason: c.reason, message: c.message?.slice(0, 2048) }));
  return {
    apiVersion: pod.apiVersion,
    kind: pod.kind,
    metadata: placeholderMeta(pod.metadata, false),
    spec: pod.spec && {
      containers: [],
      nodeName: pod.spec.nodeName,
      tolerations: pod.spec.tolerations?.slice(0, MAX_TOLERATIONS),
    },
    status: pod.status && { phase: pod.status.phase, conditions },
  };
}
