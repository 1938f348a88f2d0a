// How many unfinished runs each policy manages, kept up to date from the run watch instead of
// counted on each policy reconcile: a policy's status (activeRuns) then costs O(1), not a pass over
// every run of its namespace, however many runs the namespace holds (issue 14: policy status is
// updated incrementally).
//
// Fed every event of the runs cache (not the filtered stream the reconcilers get): an add or update
// files the run under the policy its annotation names while it has not finished, a delete forgets it.
// A relist replays the cache's adds, updates and deletes, so the index follows the cache.

import { MANAGED_LABEL, POLICY_ANNOTATION, RELEASED } from "../api/constants.js";
import type { PipelineRun } from "../api/types.js";
import { isDone } from "./run-decisions.js";

/** What the policy reconciler reads of the index. */
export interface ActiveRunCounts {
  /** The runs of `namespace` annotated with policy `name` that have not finished. */
  count(namespace: string, name: string): number;
}

export class ActiveRunIndex implements ActiveRunCounts {
  /** `namespace/policy` → the names of its active runs. */
  private readonly byPolicy = new Map<string, Set<string>>();
  /** `namespace/run` → the `namespace/policy` it is filed under, to move or forget it. */
  private readonly filedUnder = new Map<string, string>();

  /** A run was added or changed: file it under its policy while it is active, else forget it. */
  observe(run: PipelineRun): void {
    const policy = run.metadata.annotations?.[POLICY_ANNOTATION];
    // A run released without co-scheduling is no longer the policy's, though still watched.
    if (!policy || isDone(run) || run.metadata.labels?.[MANAGED_LABEL] === RELEASED) {
      this.forget(run);
      return;
    }
    const runKey = `${run.metadata.namespace}/${run.metadata.name}`;
    const policyKey = `${run.metadata.namespace}/${policy}`;
    const before = this.filedUnder.get(runKey);
    if (before === policyKey) return;
    if (before) this.unfile(before, run.metadata.name);
    this.filedUnder.set(runKey, policyKey);
    const runs = this.byPolicy.get(policyKey) ?? new Set<string>();
    this.byPolicy.set(policyKey, runs.add(run.metadata.name));
  }

  /** A run was deleted (or finished, or lost its policy). */
  forget(run: PipelineRun): void {
    const runKey = `${run.metadata.namespace}/${run.metadata.name}`;
    const before = this.filedUnder.get(runKey);
    if (!before) return;
    this.filedUnder.delete(runKey);
    this.unfile(before, run.metadata.name);
  }

  count(namespace: string, name: string): number {
    return this.byPolicy.get(`${namespace}/${name}`)?.size ?? 0;
  }

  private unfile(policyKey: string, runName: string): void {
    const runs = this.byPolicy.get(policyKey);
    runs?.delete(runName);
    if (runs?.size === 0) this.byPolicy.delete(policyKey);
  }
}
