import type { V1Node, V1Taint, V1Toleration } from "@kubernetes/client-node";
import { expect } from "chai";
import { nodeProblem } from "../../src/reconcilers/node-health.js";
import { NodeTracker } from "../../src/reconcilers/node-tracker.js";

const NOW = Date.parse("2025-03-01T12:00:00Z");
const GRACE = 30_000;

function node(
  opts: {
    unschedulable?: boolean;
    taints?: V1Taint[];
    ready?: "True" | "False" | "Unknown";
    since?: string;
  } = {},
): V1Node {
  return {
    apiVersion: "v1",
    kind: "Node",
    metadata: { name: "node-1", labels: { "kubernetes.io/hostname": "node-1" } },
    spec: { unschedulable: opts.unschedulable, taints: opts.taints },
    status: {
      conditions: [
        { type: "MemoryPressure", status: "False" },
        {
          type: "Ready",
          status: opts.ready ?? "True",
          ...(opts.since ? { lastTransitionTime: new Date(opts.since) } : {}),
        },
      ],
    },
  };
}

const taint = (key: string, effect: string, value?: string): V1Taint => ({
  key,
  effect,
  ...(value ? { value } : {}),
});

describe("nodeProblem", () => {
  it("finds nothing wrong with a healthy node", () => {
    expect(nodeProblem(node(), [], NOW, GRACE)).to.equal(undefined);
  });

  it("finds nothing wrong with a node without conditions", () => {
    expect(nodeProblem({ metadata: { name: "bare" } }, [], NOW, GRACE)).to.equal(undefined);
  });

  it("reports a missing node as Gone, to act on now", () => {
    expect(nodeProblem(undefined, [], NOW, GRACE)).to.deep.include({ reason: "Gone", waitMs: 0 });
  });

  it("reports a cordoned node", () => {
    const p = nodeProblem(node({ unschedulable: true }), [], NOW, GRACE);
    expect(p).to.deep.include({ reason: "Cordoned", waitMs: 0 });
    expect(p!.message).to.include("node-1");
  });

  for (const effect of ["NoSchedule", "NoExecute"]) {
    it(`reports an untolerated ${effect} taint, naming it`, () => {
      const p = nodeProblem(node({ taints: [taint("dedicated", effect, "gpu")] }), [], NOW, GRACE);
      expect(p).to.deep.include({ reason: "Tainted", waitMs: 0 });
      expect(p!.message).to.include(`dedicated=gpu:${effect}`);
    });
  }

  it("ignores PreferNoSchedule taints", () => {
    expect(nodeProblem(node({ taints: [taint("soft", "PreferNoSchedule")] }), [], NOW, GRACE)).to.equal(
      undefined,
    );
  });

  it("does not treat the unschedulable mirror taint alone as a problem when the node is not cordoned", () => {
    const mirror = taint("node.kubernetes.io/unschedulable", "NoSchedule");
    expect(nodeProblem(node({ taints: [mirror] }), [], NOW, GRACE)).to.equal(undefined);
    // With the cordon itself it is Cordoned, not Tainted.
    expect(nodeProblem(node({ unschedulable: true, taints: [mirror] }), [], NOW, GRACE)?.reason).to.equal(
      "Cordoned",
    );
  });

  describe("tolerations", () => {
    const dedicated = node({ taints: [taint("dedicated", "NoSchedule", "gpu")] });
    const cases: [string, V1Toleration[], boolean][] = [
      ["key + Exists", [{ key: "dedicated", operator: "Exists" }], true],
      [
        "key + Exists + matching effect",
        [{ key: "dedicated", operator: "Exists", effect: "NoSchedule" }],
        true,
      ],
      ["key + value, Equal", [{ key: "dedicated", operator: "Equal", value: "gpu" }], true],
      ["key + value, operator defaulting to Equal", [{ key: "dedicated", value: "gpu" }], true],
      ["empty key + Exists (tolerates everything)", [{ operator: "Exists" }], true],
      ["empty key + Exists + matching effect", [{ operator: "Exists", effect: "NoSchedule" }], true],
      ["key + wrong value, Equal", [{ key: "dedicated", operator: "Equal", value: "cpu" }], false],
      ["key, Equal, no value", [{ key: "dedicated", operator: "Equal" }], false],
      ["other key + Exists", [{ key: "other", operator: "Exists" }], false],
      ["key + Exists + other effect", [{ key: "dedicated", operator: "Exists", effect: "NoExecute" }], false],
      ["empty key + Exists + other effect", [{ operator: "Exists", effect: "NoExecute" }], false],
      ["empty key + Equal (invalid, tolerates nothing)", [{ operator: "Equal" }], false],
      [
        "one of several",
        [
          { key: "other", operator: "Exists" },
          { key: "dedicated", value: "gpu" },
        ],
        true,
      ],
    ];
    for (const [name, tolerations, tolerated] of cases) {
      it(`${tolerated ? "tolerates" : "does not tolerate"} with ${name}`, () => {
        const p = nodeProblem(dedicated, tolerations, NOW, GRACE);
        if (tolerated) expect(p).to.equal(undefined);
        else expect(p?.reason).to.equal("Tainted");
      });
    }

    it("matches a valueless taint with Equal and no value", () => {
      const n = node({ taints: [taint("maintenance", "NoExecute")] });
      expect(nodeProblem(n, [{ key: "maintenance", operator: "Equal" }], NOW, GRACE)).to.equal(undefined);
    });

    it("reports the first untolerated taint even when others are tolerated", () => {
      const n = node({ taints: [taint("a", "NoSchedule"), taint("b", "NoExecute")] });
      const p = nodeProblem(n, [{ key: "a", operator: "Exists" }], NOW, GRACE);
      expect(p?.reason).to.equal("Tainted");
      expect(p!.message).to.include("b:NoExecute");
    });
  });

  describe("NotReady", () => {
    const since = "2025-03-01T11:59:50Z"; // 10 s before NOW

    it("waits out the rest of the grace period after the Ready transition", () => {
      const p = nodeProblem(node({ ready: "False", since }), [], NOW, GRACE);
      expect(p?.reason).to.equal("NotReady");
      expect(p!.waitMs).to.equal(20_000);
      expect(p!.message).to.include("2025-03-01T11:59:50.000Z");
    });

    it("counts down as time passes and stops at zero", () => {
      const n = node({ ready: "Unknown", since });
      expect(nodeProblem(n, [], NOW + 5_000, GRACE)!.waitMs).to.equal(15_000);
      expect(nodeProblem(n, [], NOW + 20_000, GRACE)!.waitMs).to.equal(0);
      expect(nodeProblem(n, [], NOW + 3_600_000, GRACE)!.waitMs).to.equal(0);
    });

    it("waits the full grace period without a transition time", () => {
      expect(nodeProblem(node({ ready: "False" }), [], NOW, GRACE)).to.deep.include({
        reason: "NotReady",
        waitMs: GRACE,
      });
    });

    it("ignores the not-ready and unreachable taints that mirror the condition", () => {
      const n = node({
        ready: "False",
        since,
        taints: [
          taint("node.kubernetes.io/not-ready", "NoExecute"),
          taint("node.kubernetes.io/unreachable", "NoSchedule"),
        ],
      });
      expect(nodeProblem(n, [], NOW, GRACE)?.reason).to.equal("NotReady");
      // Ready again with stale mirror taints: no problem.
      const healed = node({ taints: [taint("node.kubernetes.io/not-ready", "NoSchedule")] });
      expect(nodeProblem(healed, [], NOW, GRACE)).to.equal(undefined);
    });
  });
});

describe("NodeTracker", () => {
  const cordoned = node({ unschedulable: true });
  const tainted = node({ taints: [taint("dedicated", "NoSchedule")] });
  const healthy = node();

  it("returns now for a node never seen in trouble", () => {
    const t = new NodeTracker();
    expect(t.troubleSince("node-1", NOW)).to.equal(NOW);
    t.observe(healthy, NOW - 1000);
    expect(t.troubleSince("node-1", NOW)).to.equal(NOW);
  });

  it("keeps the first bad time while the node stays bad, even as the trouble changes", () => {
    const t = new NodeTracker();
    t.observe(cordoned, NOW);
    t.observe(cordoned, NOW + 1000);
    expect(t.troubleSince("node-1", NOW + 5000)).to.equal(NOW);
    t.observe(tainted, NOW + 2000);
    t.observe(node({ ready: "False" }), NOW + 3000);
    expect(t.troubleSince("node-1", NOW + 5000)).to.equal(NOW);
  });

  it("resets once the node is healthy again", () => {
    const t = new NodeTracker();
    t.observe(cordoned, NOW);
    t.observe(healthy, NOW + 1000);
    expect(t.troubleSince("node-1", NOW + 2000)).to.equal(NOW + 2000);
    t.observe(tainted, NOW + 3000);
    expect(t.troubleSince("node-1", NOW + 9000)).to.equal(NOW + 3000);
  });

  it("ignores PreferNoSchedule taints", () => {
    const t = new NodeTracker();
    t.observe(node({ taints: [taint("soft", "PreferNoSchedule")] }), NOW);
    expect(t.troubleSince("node-1", NOW + 1000)).to.equal(NOW + 1000);
  });

  it("forgets a node", () => {
    const t = new NodeTracker();
    t.observe(cordoned, NOW);
    t.forget("node-1");
    expect(t.troubleSince("node-1", NOW + 1000)).to.equal(NOW + 1000);
  });

  it("tracks nodes independently and ignores nameless ones", () => {
    const t = new NodeTracker();
    t.observe(cordoned, NOW);
    t.observe({ ...tainted, metadata: { name: "node-2" } }, NOW + 500);
    t.observe({ spec: { unschedulable: true } }, NOW + 700);
    t.forget("node-1");
    expect(t.troubleSince("node-1", NOW + 1000)).to.equal(NOW + 1000);
    expect(t.troubleSince("node-2", NOW + 1000)).to.equal(NOW + 500);
  });
});
