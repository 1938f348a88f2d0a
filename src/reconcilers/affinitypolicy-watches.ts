// The watches that feed AffinityPolicyReconciler (affinitypolicy.ts): which informer events become
// `policy` work. A policy's status shows its spec (Ready), the policies it overlaps (Overlapping), its
// namespace's isolation group and how many of its runs are active: those change with a new
// generation, a sibling's selector, a namespace's label, and a run appearing, finishing or going.
// Our own status writes are not work.
//
// The same events may also be work for the run reconciler; that part is in pipelinerun-watches.ts.

import { MANAGED_LABEL, POLICY_ANNOTATION } from "../api/constants.js";
import { selectorsOverlap } from "../api/selector.js";
import type { AffinityPolicy } from "../api/types.js";
import type { WorkCause } from "../queue/work-item.js";
import { isDone } from "./run-decisions.js";
import {
  causeOf,
  type RunNews,
  runKey,
  type WatchCaches,
  type WatchedView,
  type WorkSink,
} from "./work-sink.js";

/**
 * Registers the handlers whose events become `policy` work: policy changes (the policy and the
 * policies it overlaps), namespace label changes, and runs appearing, finishing or going (through the
 * change filter the controller shares with the run watches, `runs`).
 */
export function watchPolicyInputs(caches: WatchCaches, runs: RunNews, sink: WorkSink): void {
  // A run's policy counts its active runs: it needs a look only when a run appears, finishes or goes,
  // not on each of Tekton's status writes. It sees only the run events the shared filter let through
  // (not those of the writes the controller told the filter of), as when one handler fed both.
  const runDone = new Map<string, boolean>();
  runs.onChange((run) => {
    const key = runKey(run);
    const done = isDone(run);
    const changed = runDone.get(key) !== done;
    runDone.set(key, done);
    if (!changed || run.metadata.labels?.[MANAGED_LABEL] !== "true") return;
    const policy = run.metadata.annotations?.[POLICY_ANNOTATION];
    if (policy) sink.enqueuePolicyCount(run.metadata.namespace, policy, causeOf("PipelineRun", run));
  });
  runs.onDelete((run) => {
    runDone.delete(runKey(run));
    const policy = run.metadata.annotations?.[POLICY_ANNOTATION];
    const cause = causeOf("PipelineRun", run, true);
    if (policy) sink.enqueuePolicyCount(run.metadata.namespace, policy, cause);
  });
  // A policy's spec change concerns itself and the policies it overlaps (before or after); the runs
  // waiting under it are pipelinerun-watches.ts's. Our own status writes do not change its generation:
  // they are not new work.
  const policiesSeen = new Map<string, AffinityPolicy>();
  caches.policies.onChange((policy) => {
    const key = `${policy.metadata.namespace}/${policy.metadata.name}`;
    const before = policiesSeen.get(key);
    policiesSeen.set(key, policy);
    if (before && before.metadata.generation === policy.metadata.generation) return;
    const cause = causeOf("AffinityPolicy", policy);
    sink.enqueue({
      kind: "policy",
      namespace: policy.metadata.namespace,
      name: policy.metadata.name,
      cause,
    });
    enqueueOverlappingSiblings(caches.policies, sink, policy, before, cause);
  });
  // A namespace's isolation-group label (set by cluster admins) shows in its isolate policies' status.
  caches.namespaces.onChange((namespace) => {
    const ns = namespace.metadata?.name ?? "";
    const cause = causeOf("Namespace", namespace);
    for (const p of caches.policies.list(ns))
      sink.enqueue({ kind: "policy", namespace: ns, name: p.metadata.name, cause });
  });
  caches.policies.onDelete((policy) => {
    policiesSeen.delete(`${policy.metadata.namespace}/${policy.metadata.name}`);
    enqueueOverlappingSiblings(
      caches.policies,
      sink,
      policy,
      undefined,
      causeOf("AffinityPolicy", policy, true),
    );
  });
}

/**
 * Policies whose Overlapping condition may change with `policy`: those whose selector overlaps its
 * selector now or before. One pass, O(P); the others' status cannot change.
 */
function enqueueOverlappingSiblings(
  policies: Pick<WatchedView<AffinityPolicy>, "list">,
  sink: Pick<WorkSink, "enqueue">,
  policy: AffinityPolicy,
  before: AffinityPolicy | undefined,
  cause?: WorkCause,
): void {
  const ns = policy.metadata.namespace;
  for (const p of policies.list(ns)) {
    if (p.metadata.name === policy.metadata.name) continue;
    const selector = p.spec.pipelineRunSelector;
    if (
      selectorsOverlap(selector, policy.spec.pipelineRunSelector) ||
      (before && selectorsOverlap(selector, before.spec.pipelineRunSelector))
    )
      sink.enqueue({ kind: "policy", namespace: ns, name: p.metadata.name, cause });
  }
}
