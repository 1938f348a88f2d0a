// When this replica could not act: the spans during which its Redis connection was down (no job runs,
// no reconcile). Redis is shared, so every replica is idle then. A gated run's maxWait counts only the
// time some replica could act, so an outage of ours never fails a run (run-decisions.ts decideGate).
// Times are this replica's clock; only overlaps with [from, to] of the same clock are asked.
//
// Nor does a replica vouch for the time before it started: every replica may have been down then (a
// crash loop, a node outage, an upgrade gone wrong), and it cannot know, since it compares no other
// replica's clock with its own. A run gated before the start therefore has its maxWait counted from the
// start. The price is a longer wait after restarts (at most one maxWait more per restart); the gain is
// that a full outage of ours, however long, never fails a run on the first reconcile after it.

/** Outage spans kept: the oldest are dropped (a run waits at most the operator's maxWait ceiling). */
const MAX_SPANS = 256;

export class Outages {
  private readonly spans: { from: number; to?: number }[] = [];

  /** @param startedAtMs when this replica started (its clock): earlier time counts as unavailable.
   * Default: none, every earlier time counts as available. */
  constructor(private readonly startedAtMs = Number.NEGATIVE_INFINITY) {}

  /** Redis became unreachable at `at` (a second call during one outage is ignored). */
  begin(at: number): void {
    const last = this.spans.at(-1);
    if (last && last.to === undefined) return;
    this.spans.push({ from: at });
    if (this.spans.length > MAX_SPANS) this.spans.shift();
  }

  /** Redis is reachable again at `at`. */
  end(at: number): void {
    const last = this.spans.at(-1);
    if (last && last.to === undefined) last.to = at;
  }

  /** Whether an outage is going on. */
  get down(): boolean {
    const last = this.spans.at(-1);
    return last !== undefined && last.to === undefined;
  }

  /** Milliseconds of [from, to] spent in an outage (one still going on lasts until `to`) or before this
   * replica started. */
  overlapMs(from: number, to: number): number {
    let total = Math.max(0, Math.min(to, this.startedAtMs) - from);
    for (const s of this.spans) {
      const start = Math.max(from, s.from, this.startedAtMs); // the time before the start counted already
      const end = Math.min(to, s.to ?? to);
      if (end > start) total += end - start;
    }
    return total;
  }
}
