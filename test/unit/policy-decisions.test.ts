// The AffinityPolicy reconciler's decisions as a table: an observation in, the actions out. No cluster.

import { isDeepStrictEqual } from "node:util";
import { expect } from "chai";
import { pino } from "pino";
import { effectivePlaceholderTemplate } from "../../src/api/placeholder-template.js";
import { RESOLUTION_RULE } from "../../src/api/resolve.js";
import {
  boundedSpec,
  boundedTemplate,
  DEFAULT_TENANCY_LIMITS,
  effectiveMaxWaitMs,
  parseDuration,
} from "../../src/api/tenancy.js";
import type {
  AffinityPolicy,
  AffinityPolicySpec,
  AffinityPolicyStatus,
  Condition,
} from "../../src/api/types.js";
import type { KubeClients } from "../../src/kube/clients.js";
import type { EventRecorder } from "../../src/kube/events.js";
import type { Caches } from "../../src/kube/informers.js";
import type { TektonFlags } from "../../src/kube/tekton-flags.js";
import { AffinityPolicyReconciler } from "../../src/reconcilers/affinitypolicy.js";
import {
  decidePolicy,
  type PolicyAction,
  type PolicyActionOf,
  type PolicyObservation,
  readyOf,
  sameJson,
} from "../../src/reconcilers/policy-decisions.js";
import { policy as basePolicy, run as baseRun } from "./helpers.js";

const NOW = Date.parse("2025-03-01T12:00:00Z");
const EARLIER = "2025-02-01T08:00:00.000Z";

function policy(
  name = "default",
  spec: Partial<AffinityPolicySpec> = {},
  meta: Partial<AffinityPolicy["metadata"]> = {},
): AffinityPolicy {
  return basePolicy(name, spec, { uid: `uid-${name}`, generation: 3, resourceVersion: "17", ...meta });
}

function observe(p: AffinityPolicy, o: Partial<Omit<PolicyObservation, "policy">> = {}): PolicyObservation {
  return { policy: p, policies: [p], activeRuns: 0, limits: DEFAULT_TENANCY_LIMITS, now: NOW, ...o };
}

/** The status a decision writes; fails the test when it writes none. */
function written(actions: PolicyAction[]): AffinityPolicyStatus {
  const w = actions.find((a): a is PolicyActionOf<"writeStatus"> => a.type === "writeStatus");
  expect(w, "a status write").to.not.equal(undefined);
  return w!.status;
}

const cond = (status: AffinityPolicyStatus, type: string) => status.conditions?.find((c) => c.type === type);
const eventsOf = (actions: PolicyAction[]) => actions.filter((a) => a.type === "event");
/** The policy as it is once `status` was written. */
const withStatus = (p: AffinityPolicy, status: AffinityPolicyStatus): AffinityPolicy => ({ ...p, status });

/** A value as the apiserver returns a custom resource: JSON with every object's keys in alphabetical
 * order (Go encodes the stored unstructured maps sorted), so undefined fields are absent. */
function asApiserverReturns<T>(value: T): T {
  const sorted = (v: unknown): unknown =>
    Array.isArray(v)
      ? v.map(sorted)
      : v !== null && typeof v === "object"
        ? Object.fromEntries(
            Object.entries(v)
              .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
              .map(([k, x]) => [k, sorted(x)]),
          )
        : v;
  return JSON.parse(JSON.stringify(sorted(value))) as T;
}

describe("policy decisions", () => {
  describe("Ready", () => {
    it("is True for a valid policy, saying what its mode does; the write is fenced", () => {
      const p = policy("default", { mode: "pipelineruns" });
      const actions = decidePolicy(observe(p));
      expect(actions).to.have.length(1);
      expect(actions[0]).to.include({ type: "writeStatus", resourceVersion: "17" });
      const status = written(actions);
      expect(status.observedGeneration).to.equal(3);
      expect(cond(status, "Ready")).to.deep.equal({
        type: "Ready",
        status: "True",
        reason: "Active",
        message: "mode pipelineruns applies to the PipelineRuns this policy selects",
        observedGeneration: 3,
        lastTransitionTime: new Date(NOW).toISOString(),
      });
      expect(eventsOf(actions)).to.deep.equal([]);
    });

    it("is False for an invalid spec, naming every field, with one Warning event before the write", () => {
      const p = policy("default", { topologyKey: "example.com/rack", maxWait: "soon" });
      const actions = decidePolicy(observe(p));
      const ready = cond(written(actions), "Ready")!;
      expect(ready).to.include({ status: "False", reason: "InvalidSpec", observedGeneration: 3 });
      expect(ready.message).to.match(
        /^spec\.topologyKey: "example\.com\/rack" is not allowed on this cluster; /,
      );
      expect(ready.message).to.contain('; spec.maxWait: "soon" is not a positive duration');
      expect(actions.map((a) => a.type)).to.deep.equal(["event", "writeStatus"]);
      expect(actions[0]).to.deep.equal({
        type: "event",
        eventType: "Warning",
        reason: "InvalidSpec",
        message: ready.message,
      });
    });

    it("records no event again while it stays False for the same reason", () => {
      const p = policy("default", { topologyKey: "example.com/rack" });
      const first = written(decidePolicy(observe(p)));
      // Something else changed (a run started): the status is written, the event is not repeated.
      const again = decidePolicy(observe(withStatus(p, first), { activeRuns: 1 }));
      expect(written(again).activeRuns).to.equal(1);
      expect(cond(written(again), "Ready")?.reason).to.equal("InvalidSpec");
      expect(eventsOf(again)).to.deep.equal([]);
    });

    it("records an event again when it stays False for another reason", () => {
      const p = policy("default", { placeholder: { serviceAccountName: "builder" } });
      const missing = written(decidePolicy(observe(p, { serviceAccountExists: false })));
      const actions = decidePolicy(
        observe(withStatus(p, missing), { serviceAccountExists: true, coschedule: "workspaces" }),
      );
      expect(eventsOf(actions).map((e) => e.reason)).to.deep.equal(["TektonAffinityAssistantEnabled"]);
    });

    it("records no event when it turns True", () => {
      const p = policy("default", { topologyKey: "example.com/rack" });
      const invalid = written(decidePolicy(observe(p)));
      const fixed = { ...p, spec: { mode: "workspaces" as const }, status: invalid };
      const actions = decidePolicy(observe(fixed));
      expect(cond(written(actions), "Ready")?.status).to.equal("True");
      expect(eventsOf(actions)).to.deep.equal([]);
    });

    it("is False while Tekton's own affinity assistant is on, unless the policy is disabled", () => {
      const p = policy("default", { mode: "workspaces" });
      const actions = decidePolicy(observe(p, { coschedule: "isolate-pipelinerun" }));
      const ready = cond(written(actions), "Ready")!;
      expect(ready).to.include({ status: "False", reason: "TektonAffinityAssistantEnabled" });
      expect(ready.message).to.equal(
        `Tekton's own affinity assistant is on (coschedule mode "isolate-pipelinerun") and would co-schedule these runs too; set coschedule: "disabled" in the feature-flags ConfigMap of Tekton's namespace (tekton-affinity migrate prints the equivalent policies)`,
      );
      expect(eventsOf(actions)).to.deep.equal([
        { type: "event", eventType: "Warning", reason: ready.reason, message: ready.message },
      ]);
      const disabled = policy("default", { mode: "disabled" });
      expect(
        readyOf(written(decidePolicy(observe(disabled, { coschedule: "workspaces" }))))?.status,
      ).to.equal("True");
      for (const coschedule of ["disabled", undefined]) {
        const obs = observe(p, coschedule ? { coschedule } : {});
        expect(readyOf(written(decidePolicy(obs)))?.status, String(coschedule)).to.equal("True");
      }
    });

    it("says which isolation group cluster-scope isolation spans, or that there is none", () => {
      const p = policy("default", { mode: "isolate-pipelinerun" });
      const grouped = readyOf(written(decidePolicy(observe(p, { isolationGroup: "payments" }))));
      expect(grouped?.message).to.equal(
        'mode isolate-pipelinerun applies to the PipelineRuns this policy selects; isolation spans the namespaces of isolation group "payments"',
      );
      const alone = readyOf(written(decidePolicy(observe(p))));
      expect(alone?.message).to.equal(
        "mode isolate-pipelinerun applies to the PipelineRuns this policy selects; namespace team-a is in no isolation group, so its runs are isolated from this namespace's runs only (a cluster admin adds it to a group with the namespace label affinity.tekton.dev/isolation-group)",
      );
      const namespaced = policy("default", {
        mode: "isolate-pipelinerun",
        isolation: { scope: "namespace" },
      });
      expect(readyOf(written(decidePolicy(observe(namespaced))))?.message).to.equal(
        "mode isolate-pipelinerun applies to the PipelineRuns this policy selects",
      );
    });
  });

  describe("a spec beyond the operator's bounds", () => {
    // The placeholder is built within the bounds whatever the policy says (boundedSpec, boundedTemplate,
    // effectiveMaxWaitMs), so a value the operator does not allow is ignored or capped at run time. That
    // must never be silent: every such value is also reported on the policy (Ready=False, InvalidSpec,
    // naming the field and the value, and a Warning event), even when the policy predates a tightened
    // flag or got in without the webhook.
    const limits = {
      ...DEFAULT_TENANCY_LIMITS,
      allowedPriorityClasses: ["low", "batch"],
      allowedImageRegistries: ["registry.k8s.io"],
    };
    const cases: [string, string, Partial<AffinityPolicySpec>][] = [
      ["spec.topologyKey", '"kubernetes.io/os"', { topologyKey: "kubernetes.io/os" }],
      ["spec.maxWait", '"100h"', { maxWait: "100h" }],
      ["spec.placeholder.priorityClassName", '"high"', { placeholder: { priorityClassName: "high" } }],
      [
        "spec.placeholder.image",
        '"evil.example/miner:1"',
        { placeholder: { image: "evil.example/miner:1" } },
      ],
      [
        "spec.placeholder.resources.requests.cpu",
        "2",
        { placeholder: { resources: { requests: { cpu: "2" } } } },
      ],
      [
        "spec.placeholder.resources.limits.memory",
        "2Gi",
        { placeholder: { resources: { limits: { memory: "2Gi" } } } },
      ],
    ];

    for (const [field, value, spec] of cases) {
      it(`reports ${field} ${value}, which the bounds change, on Ready with a Warning event`, () => {
        const p = policy("default", { mode: "pipelineruns", ...spec });
        // The bounds do change what the policy asks for: otherwise this case proves nothing.
        const asked = effectivePlaceholderTemplate(p.spec, baseRun(), {});
        const changed =
          !isDeepStrictEqual(boundedSpec(p.spec, limits), p.spec) ||
          !isDeepStrictEqual(boundedTemplate(asked, limits), asked) ||
          effectiveMaxWaitMs(p.spec, limits) !== parseDuration(p.spec.maxWait ?? "");
        expect(changed, "the bounds change the spec").to.equal(true);

        const actions = decidePolicy(observe(p, { limits }));
        const ready = readyOf(written(actions))!;
        expect(ready).to.include({ status: "False", reason: "InvalidSpec" });
        expect(ready.message).to.contain(`${field}: ${value} `);
        expect(eventsOf(actions)).to.deep.equal([
          { type: "event", eventType: "Warning", reason: "InvalidSpec", message: ready.message },
        ]);
      });
    }
  });

  describe("a missing ServiceAccount", () => {
    const p = policy("default", { mode: "pipelineruns", placeholder: { serviceAccountName: "builder" } });

    it("makes Ready False, saying why runs wait, with a Warning event", () => {
      const actions = decidePolicy(observe(p, { serviceAccountExists: false }));
      const ready = readyOf(written(actions))!;
      expect(ready).to.include({ status: "False", reason: "ServiceAccountNotFound" });
      expect(ready.message).to.equal(
        'spec.placeholder.serviceAccountName "builder" does not exist in namespace team-a, so placeholder pods cannot be created and runs wait at the gate; create the ServiceAccount or change the field',
      );
      expect(eventsOf(actions).map((e) => e.reason)).to.deep.equal(["ServiceAccountNotFound"]);
    });

    it("comes after an invalid spec and before Tekton's assistant", () => {
      const invalid = policy("default", { ...p.spec, topologyKey: "example.com/rack" });
      expect(
        readyOf(written(decidePolicy(observe(invalid, { serviceAccountExists: false }))))?.reason,
      ).to.equal("InvalidSpec");
      const obs = observe(p, { serviceAccountExists: false, coschedule: "workspaces" });
      expect(readyOf(written(decidePolicy(obs)))?.reason).to.equal("ServiceAccountNotFound");
    });

    it("does not matter once it exists, or when the policy names none", () => {
      expect(readyOf(written(decidePolicy(observe(p, { serviceAccountExists: true }))))?.status).to.equal(
        "True",
      );
      const unnamed = policy("default", { mode: "pipelineruns" });
      expect(
        readyOf(written(decidePolicy(observe(unnamed, { serviceAccountExists: false }))))?.status,
      ).to.equal("True");
    });
  });

  describe("reserve: LargestTask without the reservations' PriorityClass", () => {
    const p = policy("default", { mode: "pipelineruns", reserve: "LargestTask" });

    it("makes Ready False, naming the class and both ways out, with a Warning event", () => {
      const actions = decidePolicy(observe(p, { reservationClassExists: false }));
      const ready = readyOf(written(actions))!;
      expect(ready).to.include({ status: "False", reason: "ReservationPriorityClassNotFound" });
      expect(ready.message).to.contain("PriorityClass tekton-affinity-reservation does not exist");
      expect(ready.message).to.contain("remove spec.reserve");
      expect(eventsOf(actions).map((e) => e.reason)).to.deep.equal(["ReservationPriorityClassNotFound"]);
    });

    it("does not matter once the class exists", () => {
      const ready = readyOf(written(decidePolicy(observe(p, { reservationClassExists: true }))));
      expect(ready?.status).to.equal("True");
    });
  });

  describe("Overlapping", () => {
    const older = policy("older", {}, { creationTimestamp: "2024-01-01T00:00:00Z" });
    const newer = policy("newer", {}, { creationTimestamp: "2024-06-01T00:00:00Z" });

    it("is True when another policy selects the same runs, naming the winner", () => {
      const loser = cond(written(decidePolicy(observe(newer, { policies: [older, newer] }))), "Overlapping");
      expect(loser).to.include({ status: "True", reason: "SelectorsOverlap", observedGeneration: 3 });
      expect(loser?.message).to.equal(
        `selector overlaps other policies: loses to older for runs both select (${RESOLUTION_RULE}); make the selectors disjoint or more specific to control which applies`,
      );
      const winner = cond(written(decidePolicy(observe(older, { policies: [older, newer] }))), "Overlapping");
      expect(winner?.message).to.contain("wins over newer for runs both select");
    });

    it("is False when no other policy can select the same runs", () => {
      const apart = policy("apart", { pipelineRunSelector: { matchLabels: { team: "b" } } });
      const mine = policy("mine", { pipelineRunSelector: { matchLabels: { team: "a" } } });
      const deleting = policy("deleting", {}, { deletionTimestamp: EARLIER });
      const overlapping = cond(
        written(decidePolicy(observe(mine, { policies: [mine, apart, deleting] }))),
        "Overlapping",
      );
      expect(overlapping).to.deep.equal({
        type: "Overlapping",
        status: "False",
        reason: "NoOverlap",
        message: "no other AffinityPolicy in this namespace selects the same runs",
        observedGeneration: 3,
        lastTransitionTime: new Date(NOW).toISOString(),
      });
    });
  });

  describe("activeRuns", () => {
    it("reports the count it observed (ActiveRunIndex keeps it; test/unit/active-runs.test.ts)", () => {
      expect(written(decidePolicy(observe(policy(), { activeRuns: 2 }))).activeRuns).to.equal(2);
    });
  });

  describe("writing the status", () => {
    it("writes nothing when the status is unchanged, whatever the time", () => {
      const p = policy("default", { topologyKey: "example.com/rack" });
      const status = written(decidePolicy(observe(p, { activeRuns: 1 })));
      expect(
        decidePolicy(observe(withStatus(p, status), { activeRuns: 1, now: NOW + 3_600_000 })),
      ).to.deep.equal([]);
    });

    it("writes nothing when the apiserver returns the same status with its keys in its own order", () => {
      const p = policy("default", { topologyKey: "example.com/rack" });
      const status = asApiserverReturns(written(decidePolicy(observe(p, { activeRuns: 1 }))));
      expect(Object.keys(status.conditions![0]!)).to.deep.equal([
        "lastTransitionTime",
        "message",
        "observedGeneration",
        "reason",
        "status",
        "type",
      ]);
      expect(decidePolicy(observe(withStatus(p, status), { activeRuns: 1 }))).to.deep.equal([]);
      // Keys in yet another order, and without the optional fields that we leave undefined.
      const ungenerated = policy("default", {}, { generation: undefined });
      const mine = written(decidePolicy(observe(ungenerated)));
      expect(cond(mine, "Ready")).to.have.property("observedGeneration", undefined);
      const reordered: AffinityPolicyStatus = {
        conditions: asApiserverReturns(mine).conditions!.map(
          ({ lastTransitionTime, message, reason, status, type }) => ({
            message,
            lastTransitionTime,
            status,
            type,
            reason,
          }),
        ),
        activeRuns: 0,
      };
      expect(reordered).to.not.have.property("observedGeneration");
      expect(decidePolicy(observe(withStatus(ungenerated, reordered)))).to.deep.equal([]);
    });

    it("writes when what the apiserver returns differs in any field but lastTransitionTime", () => {
      const p = policy();
      const status = asApiserverReturns(written(decidePolicy(observe(p))));
      const { lastTransitionTime: _, ...overlapping } = status.conditions![1]!;
      const changed = (change: (c: Condition) => void): AffinityPolicy => {
        const copy = asApiserverReturns(status);
        change(copy.conditions![1]!);
        return withStatus(p, copy);
      };
      expect(decidePolicy(observe(changed((c) => (c.lastTransitionTime = EARLIER))))).to.deep.equal([]);
      const cases: [string, AffinityPolicy][] = [
        ["message", changed((c) => (c.message = "other words"))],
        ["reason", changed((c) => (c.reason = "Other"))],
        ["status", changed((c) => (c.status = "Unknown"))],
        ["observedGeneration", changed((c) => (c.observedGeneration = 2))],
        ["observedGeneration missing", changed((c) => delete c.observedGeneration)],
        ["an unknown field", changed((c) => Object.assign(c, { severity: "Info" }))],
        ["type", changed((c) => (c.type = "Overlaps"))],
      ];
      for (const [what, stale] of cases) {
        const actions = decidePolicy(observe(stale));
        expect(
          actions.map((a) => a.type),
          what,
        ).to.deep.equal(["writeStatus"]);
        expect(cond(written(actions), "Overlapping"), what).to.deep.include(overlapping);
      }
    });

    it("writes again when activeRuns, the generation or a condition's message changes", () => {
      const p = policy();
      const status = written(decidePolicy(observe(p)));
      const current = withStatus(p, status);
      expect(written(decidePolicy(observe(current, { activeRuns: 1 }))).activeRuns).to.equal(1);
      const edited = { ...current, metadata: { ...current.metadata, generation: 4 } };
      expect(written(decidePolicy(observe(edited))).observedGeneration).to.equal(4);
      const other = policy("other", {}, { creationTimestamp: "2023-01-01T00:00:00Z" });
      expect(
        cond(written(decidePolicy(observe(current, { policies: [current, other] }))), "Overlapping")?.status,
      ).to.equal("True");
    });

    it("keeps lastTransitionTime while a condition's status stays, and moves it when it changes", () => {
      const p = policy("default", { mode: "isolate-pipelinerun" });
      const before: AffinityPolicyStatus = {
        observedGeneration: 3,
        activeRuns: 0,
        conditions: [
          {
            type: "Ready",
            status: "True",
            reason: "Active",
            message: "old words",
            lastTransitionTime: EARLIER,
          },
          {
            type: "Overlapping",
            status: "False",
            reason: "NoOverlap",
            message: "x",
            lastTransitionTime: EARLIER,
          },
        ],
      };
      // Ready stays True with another message: its time stays.
      const status = written(decidePolicy(observe(withStatus(p, before), { isolationGroup: "payments" })));
      expect(cond(status, "Ready")?.lastTransitionTime).to.equal(EARLIER);
      // Ready turns False: its time is now; Overlapping, unchanged, keeps its own.
      const turned = written(decidePolicy(observe(withStatus(p, before), { coschedule: "workspaces" })));
      expect(cond(turned, "Ready")?.lastTransitionTime).to.equal(new Date(NOW).toISOString());
      expect(cond(turned, "Overlapping")?.lastTransitionTime).to.equal(EARLIER);
    });
  });

  it("compares JSON values, not JSON text: key order and undefined fields aside", () => {
    expect(sameJson({ a: 1, b: [{ c: 2, d: undefined }] }, { b: [{ c: 2 }], a: 1 })).to.equal(true);
    expect(sameJson({ at: new Date(NOW) }, { at: new Date(NOW).toISOString() })).to.equal(true);
    expect(sameJson({ a: 1, b: [1, 2] }, { a: 1, b: [2, 1] })).to.equal(false);
    expect(sameJson({ a: 1 }, { a: 1, b: null })).to.equal(false);
    expect(sameJson({ a: 1 }, { a: "1" })).to.equal(false);
  });

  it("never reads the clock: time comes from the observation", () => {
    const realNow = Date.now;
    Date.now = () => {
      throw new Error("Date.now() called in a decision");
    };
    try {
      const status = written(decidePolicy(observe(policy(), { now: NOW + 1234 })));
      expect(cond(status, "Ready")?.lastTransitionTime).to.equal(new Date(NOW + 1234).toISOString());
    } finally {
      Date.now = realNow;
    }
  });
});

// ---- the executor, against a fake API: the ServiceAccount lookup and the writes ----

describe("AffinityPolicyReconciler executing the decisions", () => {
  type Call = [string, unknown];
  const notFound = () => Object.assign(new Error("not found"), { code: 404, body: "{}" });

  function harness(
    p: AffinityPolicy,
    o: { serviceAccount?: () => unknown; coschedule?: string; events?: boolean } = {},
  ) {
    const calls: Call[] = [];
    const events: [string, string, string][] = [];
    const client = new Proxy(
      {},
      {
        get: (_, name) => async (arg: unknown) => {
          calls.push([String(name), arg]);
          if (name === "readNamespacedServiceAccount" && o.serviceAccount) return o.serviceAccount();
          return {};
        },
      },
    );
    const cache = <T extends { metadata?: { name?: string } }>(items: T[]) => ({
      get: (name: string) => items.find((i) => i.metadata?.name === name),
      list: () => items,
    });
    const caches = {
      policies: cache([p]),
      namespaces: cache([]),
    } as unknown as Caches;
    const reconciler = new AffinityPolicyReconciler({
      clients: { core: client, custom: client } as unknown as KubeClients,
      caches,
      activeRuns: { count: (ns, name) => (ns === "team-a" && name === p.metadata.name ? 1 : 0) },
      logger: pino({ level: "silent" }),
      tektonFlags: {
        state: async () =>
          o.coschedule === undefined ? undefined : { mode: o.coschedule, fix: 'set coschedule: "disabled"' },
      } as unknown as TektonFlags,
      ...(o.events === false
        ? {}
        : {
            events: {
              record: async (_t: unknown, type: string, reason: string, message: string) => {
                calls.push(["event", reason]);
                events.push([type, reason, message]);
              },
            } as unknown as EventRecorder,
          }),
    });
    return { reconcile: () => reconciler.reconcile("team-a", p.metadata.name), calls, events };
  }

  const patches = (calls: Call[]) =>
    calls.filter(([name]) => name === "patchNamespacedCustomObjectStatus").map(([, arg]) => arg);

  it("looks the ServiceAccount up, records the event, then writes the status fenced by resourceVersion", async () => {
    const p = policy("default", { mode: "pipelineruns", placeholder: { serviceAccountName: "builder" } });
    const h = harness(p, {
      serviceAccount: () => {
        throw notFound();
      },
    });
    expect(await h.reconcile()).to.deep.equal({});
    expect(h.calls.map(([name]) => name)).to.deep.equal([
      "readNamespacedServiceAccount",
      "event",
      "patchNamespacedCustomObjectStatus",
    ]);
    expect(h.calls[0]![1]).to.deep.equal({ name: "builder", namespace: "team-a" });
    expect(h.events.map(([type, reason]) => [type, reason])).to.deep.equal([
      ["Warning", "ServiceAccountNotFound"],
    ]);
    const [patch] = patches(h.calls) as {
      namespace: string;
      name: string;
      body: { metadata: { resourceVersion: string }; status: AffinityPolicyStatus };
    }[];
    expect(patch).to.include({ namespace: "team-a", name: "default" });
    expect(patch!.body.metadata).to.deep.equal({ resourceVersion: "17" });
    expect(readyOf(patch!.body.status)?.reason).to.equal("ServiceAccountNotFound");
    expect(patch!.body.status.activeRuns).to.equal(1);
  });

  it("sends no PATCH when the cache holds, as the apiserver returned it, the status it wrote", async () => {
    const p = policy("default", { mode: "pipelineruns" });
    const first = harness(p);
    await first.reconcile();
    const [patch] = patches(first.calls) as { body: { status: AffinityPolicyStatus } }[];
    const stored = asApiserverReturns({
      ...p,
      metadata: { ...p.metadata, resourceVersion: "18" },
      status: patch!.body.status,
    });
    const again = harness(stored);
    await again.reconcile();
    expect(again.calls).to.deep.equal([]);
  });

  it("fails the reconcile (for a retry) when the ServiceAccount lookup fails otherwise", async () => {
    const p = policy("default", { placeholder: { serviceAccountName: "builder" } });
    const h = harness(p, {
      serviceAccount: () => {
        throw Object.assign(new Error("forbidden"), { code: 403, body: "{}" });
      },
    });
    let failed: unknown;
    await h.reconcile().catch((err) => {
      failed = err;
    });
    expect(failed).to.be.instanceOf(Error);
    expect(patches(h.calls)).to.deep.equal([]);
  });

  it("writes the status without an event recorder, and nothing for a policy being deleted", async () => {
    const h = harness(policy("default", {}), { coschedule: "workspaces", events: false });
    await h.reconcile();
    expect(h.calls.map(([name]) => name)).to.deep.equal(["patchNamespacedCustomObjectStatus"]);
    const deleting = harness(policy("default", {}, { deletionTimestamp: EARLIER }), {
      coschedule: "workspaces",
    });
    await deleting.reconcile();
    expect(deleting.calls).to.deep.equal([]);
  });
});
