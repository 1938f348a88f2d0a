// The watches that feed PipelineRunReconciler (pipelinerun.ts): which informer events become `run`
// work. An event becomes work for the runs it concerns when it changes something the reconciler reads
// (src/reconcilers/change-filter.ts): Tekton's status writes, node heartbeats and StatefulSet counters
// are not work. A run that waits is looked at again by its own requeue-after.
//
// The same events may also be work for the policy reconciler; that part is in affinitypolicy-watches.ts.

import type * as k8s from "@kubernetes/client-node";
import {
  GATED_ANNOTATION,
  isWatchedRun,
  MANAGED_LABEL,
  POLICY_ANNOTATION,
  RUN_LABEL,
} from "../api/constants.js";
import type { PipelineRun } from "../api/types.js";
import type { CauseKind, WorkCause } from "../queue/work-item.js";
import {
  ChangeFilter,
  nodeSchedulingFingerprint,
  placeholderPodFingerprint,
  placeholderPodIsNoNews,
  placeholderSetFingerprint,
  placeholderSetIsNoNews,
} from "./change-filter.js";
import { isDone } from "./run-decisions.js";
import { causeOf, type RunNews, type WatchCaches, type WatchedView, type WorkSink } from "./work-sink.js";

/**
 * Registers the handlers whose events become `run` work: the run's own changes (through the change
 * filter the controller shares with the policy watches, `runs`), its placeholder pods and StatefulSets,
 * their FailedCreate events, nodes, and policy spec changes (for the runs that wait under them).
 */
export function watchRunInputs(caches: WatchCaches, runs: RunNews, sink: WorkSink): void {
  // A run event the filter let through (not Tekton's status writes, not our own writes) is work for the
  // run; whether it is also work for its policy's count is affinitypolicy-watches.ts's to say.
  runs.onChange((run) => {
    if (!isWatchedRun(run)) return;
    sink.enqueue({
      kind: "run",
      namespace: run.metadata.namespace,
      name: run.metadata.name,
      cause: causeOf("PipelineRun", run),
    });
  });
  const byRunLabel = (obj: k8s.KubernetesObject, cause: WorkCause | undefined) => {
    const name = obj.metadata?.labels?.[RUN_LABEL];
    if (name) sink.enqueue({ kind: "run", namespace: obj.metadata?.namespace ?? "", name, cause });
  };
  // A placeholder event concerns its run while the run runs; once the run is done or gone, the
  // placeholder going away is the cleanup we started, not news.
  const filtered = <T extends k8s.KubernetesObject>(kind: CauseKind, filter: ChangeFilter<T>) => {
    const forLiveRun = (obj: T, deleted: boolean) => {
      const run = caches.runs.get(obj.metadata?.labels?.[RUN_LABEL] ?? "", obj.metadata?.namespace ?? "");
      if (run && !isDone(run)) byRunLabel(obj, causeOf(kind, obj, deleted));
    };
    return {
      onChange: (obj: T) => {
        if (filter.changed(`${obj.metadata?.namespace}/${obj.metadata?.name}`, obj)) forLiveRun(obj, false);
      },
      onDelete: (obj: T) => {
        filter.forget(`${obj.metadata?.namespace}/${obj.metadata?.name}`);
        forLiveRun(obj, true);
      },
    };
  };
  const pods = filtered("Pod", new ChangeFilter(placeholderPodFingerprint, placeholderPodIsNoNews));
  caches.placeholderPods.onChange(pods.onChange);
  caches.placeholderPods.onDelete(pods.onDelete);
  const sets = filtered("StatefulSet", new ChangeFilter(placeholderSetFingerprint, placeholderSetIsNoNews));
  caches.placeholderSets.onChange(sets.onChange);
  caches.placeholderSets.onDelete(sets.onDelete);
  // A placeholder pod the StatefulSet controller could not create (quota, Pod Security): tell its run.
  caches.failedCreates.onChange((event) => {
    const set = caches.placeholderSets.get(
      event.involvedObject.name ?? "",
      event.involvedObject.namespace ?? "",
    );
    if (set) byRunLabel(set, causeOf("Event", event));
  });
  // A node whose schedulability changed (cordon, taint, NotReady) concerns the runs whose placeholders
  // sit on it; a node that is new or newly usable may fit the runs that wait. Heartbeats are not work.
  const nodes = new ChangeFilter(nodeSchedulingFingerprint);
  const nodesSeen = new Set<string>();
  // The nodes listed before these handlers existed are known already: their first heartbeat after a
  // start is not a node becoming usable (it was, for every waiting run, one job per replica start).
  for (const node of caches.nodes.list()) {
    const name = node.metadata?.name ?? "";
    nodes.changed(name, node);
    nodesSeen.add(name);
  }
  caches.nodes.onChange((node) => {
    const name = node.metadata?.name ?? "";
    if (!nodes.changed(name, node)) return;
    const cause = causeOf("Node", node);
    for (const pod of caches.placeholderPods.list()) if (pod.spec?.nodeName === name) byRunLabel(pod, cause);
    const known = nodesSeen.has(name);
    nodesSeen.add(name);
    if (known || sink.synced()) enqueueWaitingRuns(caches.runs, sink, undefined, undefined, cause);
  });
  caches.nodes.onDelete((node) => {
    const name = node.metadata?.name ?? "";
    nodes.forget(name);
    nodesSeen.delete(name);
    const cause = causeOf("Node", node, true);
    for (const pod of caches.placeholderPods.list()) if (pod.spec?.nodeName === name) byRunLabel(pod, cause);
  });
  // A policy's spec change concerns the runs waiting under it (and itself and the policies it overlaps:
  // affinitypolicy-watches.ts). Our own status writes do not change its generation: they are not new
  // work. The policy watches remember each policy's last version too (they need its selector before the
  // change); both maps are set and cleared by every event of the same cache and nothing else, so they
  // agree on what is a new generation.
  const generations = new Map<string, number | undefined>();
  caches.policies.onChange((policy) => {
    const key = `${policy.metadata.namespace}/${policy.metadata.name}`;
    const known = generations.has(key);
    const before = generations.get(key);
    generations.set(key, policy.metadata.generation);
    if (known && before === policy.metadata.generation) return;
    const cause = causeOf("AffinityPolicy", policy);
    enqueueWaitingRuns(caches.runs, sink, policy.metadata.namespace, policy.metadata.name, cause);
  });
  caches.policies.onDelete((policy) => {
    generations.delete(`${policy.metadata.namespace}/${policy.metadata.name}`);
  });
}

/** Runs still held at the gate (optionally only those of one policy). */
export function enqueueWaitingRuns(
  runs: Pick<WatchedView<PipelineRun>, "list">,
  sink: Pick<WorkSink, "enqueue">,
  namespace?: string,
  policy?: string,
  cause?: WorkCause,
): void {
  for (const run of runs.list(namespace)) {
    const a = run.metadata.annotations;
    if (a?.[GATED_ANNOTATION] !== "true" || (policy && a[POLICY_ANNOTATION] !== policy)) continue;
    if (run.metadata.labels?.[MANAGED_LABEL] !== "true") continue;
    sink.enqueue({ kind: "run", namespace: run.metadata.namespace, name: run.metadata.name, cause });
  }
}
