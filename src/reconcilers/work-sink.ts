// What the watches of each reconciler (pipelinerun-watches.ts, affinitypolicy-watches.ts) need from the
// controller that runs them: somewhere to put work, whether its caches have synced, the caches
// themselves (as far as a watch reads them), and the one run change filter both watches share.

import type { PipelineRun } from "../api/types.js";
import type { Caches, WatchedCache } from "../kube/informers.js";
import type { CauseKind, WorkCause, WorkItem } from "../queue/work-item.js";
import type { ChangeFilter } from "./change-filter.js";

/**
 * Where the watches put work; the controller implements it over its work queue. Work caused by an
 * event names the event (`cause`), so that every replica that sees it adds one job between them.
 */
export interface WorkSink {
  /** Work to do now (dropped while too many enqueues wait for Redis; the next resync restores it). */
  enqueue(item: WorkItem): void;
  /** A policy whose count of active runs may have changed: throttled, one update covers a burst. */
  enqueuePolicyCount(namespace: string, name: string, cause?: WorkCause): void;
  /** Whether the informer caches have listed; read when an event arrives, not when the watch starts. */
  synced(): boolean;
}

/** What a watch reads of one cache: its events, and its objects. */
export interface WatchedView<T> {
  onChange(handler: (obj: T) => void): void;
  onDelete(handler: (obj: T) => void): void;
  get(name: string, namespace?: string): T | undefined;
  list(namespace?: string): readonly T[];
}

/** The informer caches as the watches read them (a test passes fakes). */
export type WatchCaches = {
  [K in keyof Caches]: Caches[K] extends WatchedCache<infer T> ? WatchedView<T> : never;
};

/** What naming an event needs of an object, whichever its kind. */
export interface Versioned {
  metadata?: { name?: string; namespace?: string; resourceVersion?: string };
}

/** The watch event an object's add, update or delete is, to name the work it causes. */
export function causeOf(kind: CauseKind, obj: Versioned, deleted = false): WorkCause | undefined {
  const resourceVersion = obj.metadata?.resourceVersion;
  if (!resourceVersion) return undefined;
  return {
    kind,
    namespace: obj.metadata?.namespace ?? "",
    name: obj.metadata?.name ?? "",
    resourceVersion,
    ...(deleted ? { deleted } : {}),
  };
}

/** Run events that are news to the run reconciler, for every watch that listens to them. */
export interface RunNews {
  /** A run event its change filter let through. */
  onChange(handler: (run: PipelineRun) => void): void;
  /** A run gone (its filter has forgotten it). */
  onDelete(handler: (run: PipelineRun) => void): void;
}

/**
 * Run events through one ChangeFilter, handed to the run watches and the policy watches in the order
 * they registered. One filter, not one per watch: the controller tells it of its own writes to a run
 * (`observe`), which makes their events no news to either; and a filter answers "changed" once per
 * change, so a second filter, or a second ask of this one, would disagree with the first about what is
 * news. The policy watch counts a run's finish only on an event the filter let through, as it did when
 * both were one handler.
 */
export function runNews(
  runs: Pick<WatchedView<PipelineRun>, "onChange" | "onDelete">,
  filter: ChangeFilter<PipelineRun>,
): RunNews {
  const changed: ((run: PipelineRun) => void)[] = [];
  const deleted: ((run: PipelineRun) => void)[] = [];
  runs.onChange((run) => {
    if (!filter.changed(runKey(run), run)) return;
    for (const h of changed) h(run);
  });
  runs.onDelete((run) => {
    filter.forget(runKey(run));
    for (const h of deleted) h(run);
  });
  return {
    onChange: (h) => void changed.push(h),
    onDelete: (h) => void deleted.push(h),
  };
}

/** A run's key in the change filter (and in the watches' own maps). */
export function runKey(run: PipelineRun): string {
  return `${run.metadata.namespace}/${run.metadata.name}`;
}
