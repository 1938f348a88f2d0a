// How long a gated run waits for its placeholder, and what then: pure decisions, unit-tested.
//
// Tekton does not start a run's timeout while it is pending, so without a bound a run that can never
// be placed would wait forever. Each run gets maxWait (its policy's, within the operator's ceiling);
// past it, onMaxWait decides: Fail ends the run, Release starts it without co-scheduling.
//
// While it waits, the run is looked at again on every event that can change its outcome (its
// placeholder pod or StatefulSet changing, a FailedCreate event, a node added or becoming usable, its
// policy changing) and, as a safety net, on a requeue-after that backs off with the time already
// waited, so a long wait is not polled every second.

import { formatDuration } from "../api/tenancy.js";

/** The longest pause between two looks at a waiting run. */
export const MAX_WAIT_REQUEUE_MS = 30_000;

export type OnMaxWait = "Fail" | "Release";

export type WaitDecision =
  | { action: "wait"; requeueAfterMs: number }
  | { action: "fail"; message: string }
  | { action: "release"; message: string };

export interface WaitState {
  /** How long the run has been gated (since its creation). */
  waitedMs: number;
  maxWaitMs: number;
  onMaxWait: OnMaxWait;
  /** What the run waits for, as last seen (scheduler message, refusal), if anything is known. */
  reason: string | undefined;
  /** The shortest requeue (the first look after creation). */
  minRequeueMs: number;
}

/** Capped backoff: a quarter of the time waited so far, between minRequeueMs and MAX_WAIT_REQUEUE_MS,
 * and never past the deadline. */
export function waitRequeueMs(waitedMs: number, remainingMs: number, minRequeueMs: number): number {
  const backoff = Math.min(MAX_WAIT_REQUEUE_MS, Math.max(minRequeueMs, waitedMs / 4));
  return Math.max(1, Math.ceil(Math.min(backoff, remainingMs)));
}

export function decideWait(s: WaitState): WaitDecision {
  const remainingMs = s.maxWaitMs - s.waitedMs;
  if (remainingMs > 0) {
    return { action: "wait", requeueAfterMs: waitRequeueMs(s.waitedMs, remainingMs, s.minRequeueMs) };
  }
  const why = s.reason ?? "its placeholder was not scheduled";
  const waited = `waited longer than maxWait (${formatDuration(s.maxWaitMs)}) to be co-scheduled; last reason: ${why}`;
  return s.onMaxWait === "Release"
    ? { action: "release", message: `${waited}; starting without co-scheduling (onMaxWait: Release)` }
    : { action: "fail", message: `${waited} (onMaxWait: Fail)` };
}
