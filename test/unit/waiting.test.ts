import { expect } from "chai";
import { decideWait, MAX_WAIT_REQUEUE_MS, waitRequeueMs } from "../../src/reconcilers/waiting.js";

describe("waiting at the gate", () => {
  const base = { maxWaitMs: 90_000, onMaxWait: "Fail" as const, reason: undefined, minRequeueMs: 1000 };

  it("backs off with the time waited, capped, and never past the deadline", () => {
    expect(waitRequeueMs(0, 90_000, 1000)).to.equal(1000);
    expect(waitRequeueMs(20_000, 70_000, 1000)).to.equal(5000);
    expect(waitRequeueMs(10 * 60_000, 60 * 60_000, 1000)).to.equal(MAX_WAIT_REQUEUE_MS);
    expect(waitRequeueMs(80_000, 2500, 1000)).to.equal(2500);
  });

  it("keeps waiting before maxWait", () => {
    expect(decideWait({ ...base, waitedMs: 10_000 })).to.deep.equal({ action: "wait", requeueAfterMs: 2500 });
  });

  it("fails at maxWait, saying how long and the last reason", () => {
    const d = decideWait({ ...base, waitedMs: 90_000, reason: "0/3 nodes are available" });
    expect(d.action).to.equal("fail");
    if (d.action !== "fail") return;
    expect(d.message).to.contain("waited longer than maxWait (1m30s)");
    expect(d.message).to.contain("last reason: 0/3 nodes are available");
  });

  it("releases at maxWait with onMaxWait: Release", () => {
    const d = decideWait({ ...base, onMaxWait: "Release", waitedMs: 120_000 });
    expect(d.action).to.equal("release");
    if (d.action !== "release") return;
    expect(d.message).to.contain("starting without co-scheduling");
    expect(d.message).to.contain("its placeholder was not scheduled");
  });
});
