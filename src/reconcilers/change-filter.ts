// Which informer events are new work. An informer reports every write to an object: Tekton rewrites a
// run's status many times, kubelets (KWOK) renew node status every few seconds, the StatefulSet
// controller updates counters. A reconciler reads only a few fields of each; an event that changes none
// of them cannot change its decision, so it is not enqueued. Each kind's relevant fields are listed here,
// beside the reconciler reads they stand for.

import type * as k8s from "@kubernetes/client-node";
import { GROUP } from "../api/constants.js";
import type { PipelineRun } from "../api/types.js";

/** Remembers the last fingerprint per object; says whether a new one differs. */
export class ChangeFilter<T> {
  private readonly seen = new Map<string, string>();

  /**
   * @param quietOnAdd an object first seen in this state is no news (e.g. a placeholder we just created,
   * not scheduled yet: the reconcile that created it already decided what follows).
   */
  constructor(
    private readonly fingerprint: (obj: T) => string,
    private readonly quietOnAdd: (obj: T) => boolean = () => false,
  ) {}

  /** True when the object is new or its fingerprint changed (and remembers it). */
  changed(key: string, obj: T): boolean {
    const next = this.fingerprint(obj);
    const previous = this.seen.get(key);
    this.seen.set(key, next);
    if (previous === undefined) return !this.quietOnAdd(obj);
    return previous !== next;
  }

  /** Remembers the object as our own write left it: its watch event is then no news. */
  observe(key: string, obj: T): void {
    this.seen.set(key, this.fingerprint(obj));
  }

  forget(key: string): void {
    this.seen.delete(key);
  }
}

/** Our own marks: labels and annotations under affinity.tekton.dev/. */
function ours(map: Record<string, string> | undefined): [string, string][] {
  return Object.entries(map ?? {})
    .filter(([k]) => k.startsWith(`${GROUP}/`))
    .sort(([a], [b]) => a.localeCompare(b));
}

/**
 * What PipelineRunReconciler reads from a run: our labels and annotations (managed, gated, policy, mode,
 * waiting, placed-on, released), spec.status (the gate), whether it is done, and deletion. Tekton's
 * status writes (child references, timings) change none of these.
 */
export function runFingerprint(run: PipelineRun): string {
  // Done or not: Tekton's move from no condition to Unknown (running) is not news.
  const succeeded = run.status?.conditions?.find((c) => c.type === "Succeeded")?.status;
  const done = succeeded !== undefined && succeeded !== "Unknown";
  return JSON.stringify([
    run.metadata.uid,
    ours(run.metadata.labels),
    ours(run.metadata.annotations),
    run.spec.status ?? "",
    done,
    run.metadata.deletionTimestamp ?? "",
  ]);
}

/**
 * What the run reconciler reads from its placeholder pod: where it is (or why it is not) scheduled,
 * whether it is going away, and which StatefulSet owns it. Phase, readiness and IPs are not read.
 */
export function placeholderPodFingerprint(pod: k8s.V1Pod): string {
  const scheduled = pod.status?.conditions?.find((c) => c.type === "PodScheduled");
  // A reservation preempted (reserve: LargestTask) is counted by its run's reconcile.
  const disrupted = pod.status?.conditions?.find((c) => c.type === "DisruptionTarget");
  return JSON.stringify([
    pod.metadata?.uid,
    pod.spec?.nodeName ?? "",
    pod.metadata?.deletionTimestamp ?? "",
    scheduled?.status ?? "",
    scheduled?.reason ?? "",
    scheduled?.message ?? "",
    pod.metadata?.ownerReferences?.find((o) => o.controller)?.uid ?? "",
    disrupted?.reason ?? "",
  ]);
}

/** What the run reconciler reads from its placeholder StatefulSet: which one it is, its template hash, its deletion. */
export function placeholderSetFingerprint(set: k8s.V1StatefulSet): string {
  return JSON.stringify([
    set.metadata?.uid,
    ours(set.metadata?.annotations),
    set.metadata?.deletionTimestamp ?? "",
  ]);
}

/** A string map's entries in key order, whatever order the object was built in. */
function sortedEntries(map: Record<string, string> | undefined): [string, string][] {
  return Object.entries(map ?? {}).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}

/**
 * What decides whether a node may keep or take a placeholder: cordon, taints, readiness, labels (node
 * affinity, topology) and allocatable room. A status heartbeat changes none of these.
 *
 * The nodes cache gets its objects two ways: the list through client-node's typed deserializer (its
 * own key order, timeAdded as a Date) and watch events as the apiserver's raw JSON. The fingerprint
 * must not tell them apart, or every tainted node's first watch event after a start or relist is
 * "news". So only plain values go in, in a fixed order: taints as sorted key=value:effect (timeAdded
 * is when, not what), and maps as sorted entries.
 */
export function nodeSchedulingFingerprint(node: k8s.V1Node): string {
  const ready = node.status?.conditions?.find((c) => c.type === "Ready")?.status ?? "";
  const taints = (node.spec?.taints ?? []).map((t) => `${t.key}=${t.value ?? ""}:${t.effect}`).sort();
  return JSON.stringify([
    node.spec?.unschedulable ?? false,
    taints,
    ready,
    sortedEntries(node.metadata?.labels),
    sortedEntries(node.status?.allocatable),
  ]);
}

/** A placeholder pod just created, neither scheduled nor refused by the scheduler yet: nothing to act on. */
export function placeholderPodIsNoNews(pod: k8s.V1Pod): boolean {
  const refused = pod.status?.conditions?.some((c) => c.type === "PodScheduled" && c.status === "False");
  return !pod.spec?.nodeName && !pod.metadata?.deletionTimestamp && !refused;
}

/** A placeholder StatefulSet appearing is our own create coming back; its deletion is news. */
export function placeholderSetIsNoNews(set: k8s.V1StatefulSet): boolean {
  return !set.metadata?.deletionTimestamp;
}
