// Tekton rewrites a running PipelineRun's status many times (child references, "Tasks Completed: n"
// messages). None of that changes what our reconciler decides, so those updates enqueue nothing. The
// signature holds exactly the fields the PipelineRun reconciler and the policy's activeRuns read.

import { GROUP, MANAGED_LABEL } from "../api/constants.js";
import type { PipelineRun } from "../api/types.js";
import { isDone } from "../reconcilers/pipelinerun.js";

export function runSignature(run: PipelineRun): string {
  const ours = Object.entries(run.metadata.annotations ?? {})
    .filter(([k]) => k.startsWith(`${GROUP}/`))
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return JSON.stringify([
    run.metadata.labels?.[MANAGED_LABEL],
    ours,
    run.spec.status,
    isDone(run),
    run.metadata.deletionTimestamp ?? null,
  ]);
}

/** Remembers the last signature per run uid; `changed` is true the first time and on any change. */
export class RunChangeFilter {
  private readonly last = new Map<string, string>();

  changed(run: PipelineRun): boolean {
    const uid = run.metadata.uid ?? `${run.metadata.namespace}/${run.metadata.name}`;
    const signature = runSignature(run);
    if (this.last.get(uid) === signature) return false;
    this.last.set(uid, signature);
    return true;
  }

  forget(run: PipelineRun): void {
    this.last.delete(run.metadata.uid ?? `${run.metadata.namespace}/${run.metadata.name}`);
  }
}
