// Replica Leases are judged by this replica's clock alone: a writer whose clock is minutes off neither
// keeps a dead replica "live" nor makes a live one look dead.

import type { V1Lease } from "@kubernetes/client-node";
import { expect } from "chai";
import { leaseIsLive, sight } from "../../src/webhooks/replica-leases.js";

const DURATION_S = 30;
const NOW = Date.parse("2026-12-07T12:00:00Z");

function lease(version: string, renewTimeMs: number): V1Lease {
  return {
    metadata: { name: "tekton-affinity-webhook-a", resourceVersion: version },
    spec: { leaseDurationSeconds: DURATION_S, renewTime: new Date(renewTimeMs) as never },
  };
}

describe("replica Lease liveness with skewed clocks", () => {
  it("expires a Lease that stopped changing one duration after we last saw it change, even if its renewTime is in our future", () => {
    // Its writer's clock ran ten minutes ahead, then the writer died.
    const stale = lease("41", NOW + 10 * 60_000);
    const first = sight(undefined, stale, NOW);
    expect(leaseIsLive(stale, first, NOW)).to.equal(true);
    const later = NOW + DURATION_S * 1000 + 1;
    const again = sight(first, stale, later);
    expect(again).to.equal(first);
    expect(leaseIsLive(stale, again, later)).to.equal(false);
  });

  it("keeps a Lease live while it keeps changing, even if its renewTime is minutes in our past", () => {
    // Its writer's clock runs ten minutes behind ours, and it renews every 10 s.
    let seen = sight(undefined, lease("1", NOW - 10 * 60_000), NOW);
    for (let i = 1; i <= 10; i++) {
      const now = NOW + i * 10_000;
      const renewed = lease(String(i + 1), now - 10 * 60_000);
      seen = sight(seen, renewed, now);
      expect(leaseIsLive(renewed, seen, now), `renewal ${i}`).to.equal(true);
    }
  });

  it("counts a Lease that was never renewed as dead", () => {
    const never: V1Lease = { metadata: { resourceVersion: "1" }, spec: { leaseDurationSeconds: DURATION_S } };
    expect(leaseIsLive(never, sight(undefined, never, NOW), NOW)).to.equal(false);
  });
});
