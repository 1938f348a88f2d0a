// The watches of each reconciler (src/reconcilers/*-watches.ts): which informer events become which
// work, driven through fake caches into a sink that records what was enqueued.

import type * as k8s from "@kubernetes/client-node";
import { expect } from "chai";
import type { AffinityPolicy, PipelineRun } from "../../src/api/types.js";
import type { WorkCause, WorkItem } from "../../src/queue/work-item.js";
import { watchPolicyInputs } from "../../src/reconcilers/affinitypolicy-watches.js";
import { ChangeFilter, runFingerprint } from "../../src/reconcilers/change-filter.js";
import { watchRunInputs } from "../../src/reconcilers/pipelinerun-watches.js";
import { runKey, runNews, type WatchCaches, type WorkSink } from "../../src/reconcilers/work-sink.js";

const NS = "team-a";
const MANAGED = "affinity.tekton.dev/managed";
const GATED = "affinity.tekton.dev/gated";
const POLICY = "affinity.tekton.dev/policy";
const RUN_LABEL = "affinity.tekton.dev/pipelinerun";

/** An informer cache as the watches see it: events go to the handlers after the store is updated. */
class FakeCache<T extends k8s.KubernetesObject> {
  private readonly objects = new Map<string, T>();
  private readonly changed: ((obj: T) => void)[] = [];
  private readonly deleted: ((obj: T) => void)[] = [];
  onChange(h: (obj: T) => void): void {
    this.changed.push(h);
  }
  onDelete(h: (obj: T) => void): void {
    this.deleted.push(h);
  }
  get(name: string, namespace?: string): T | undefined {
    return this.objects.get(`${namespace ?? ""}/${name}`);
  }
  list(namespace?: string): readonly T[] {
    return [...this.objects.values()].filter(
      (o) => namespace === undefined || o.metadata?.namespace === namespace,
    );
  }
  /** In the cache without an event: listed before the watches registered. */
  seed(obj: T): void {
    this.objects.set(`${obj.metadata?.namespace ?? ""}/${obj.metadata?.name}`, obj);
  }
  change(obj: T): void {
    this.seed(obj);
    for (const h of this.changed) h(obj);
  }
  delete(obj: T): void {
    this.objects.delete(`${obj.metadata?.namespace ?? ""}/${obj.metadata?.name}`);
    for (const h of this.deleted) h(obj);
  }
}

type RunObj = PipelineRun & k8s.KubernetesObject;
type PolicyObj = AffinityPolicy & k8s.KubernetesObject;

function fakeCaches() {
  return {
    runs: new FakeCache<RunObj>(),
    policies: new FakeCache<PolicyObj>(),
    placeholderSets: new FakeCache<k8s.V1StatefulSet>(),
    placeholderPods: new FakeCache<k8s.V1Pod>(),
    nodes: new FakeCache<k8s.V1Node>(),
    namespaces: new FakeCache<k8s.V1Namespace>(),
    failedCreates: new FakeCache<k8s.CoreV1Event>(),
  } satisfies WatchCaches;
}

function label(
  item: WorkItem | { kind: "count"; namespace: string; name: string; cause?: WorkCause },
): string {
  const c = item.cause;
  const cause = c
    ? `${c.kind}/${c.namespace}/${c.name}@${c.resourceVersion}${c.deleted ? "/deleted" : ""}`
    : "-";
  return `${item.kind} ${item.namespace}/${item.name} <- ${cause}`;
}

/** Records each enqueue as "kind ns/name <- cause"; a policy count is kind "count" (it is throttled). */
class RecordingSink implements WorkSink {
  items: string[] = [];
  enqueue(item: WorkItem): void {
    this.items.push(label(item));
  }
  enqueuePolicyCount(namespace: string, name: string, cause?: WorkCause): void {
    this.items.push(label({ kind: "count", namespace, name, cause }));
  }
  synced(): boolean {
    return true;
  }
  /** What was enqueued since the last take. */
  take(): string[] {
    const out = this.items;
    this.items = [];
    return out;
  }
}

/** Both reconcilers' watches over one run change filter, as the controller wires them. */
function wire(which: "both" | "runs" | "policies" = "both") {
  const caches = fakeCaches();
  const sink = new RecordingSink();
  const runFilter = new ChangeFilter(runFingerprint);
  return {
    caches,
    sink,
    runFilter,
    start() {
      const runs = runNews(caches.runs, runFilter);
      if (which !== "runs") watchPolicyInputs(caches, runs, sink);
      if (which !== "policies") watchRunInputs(caches, runs, sink);
    },
  };
}

function run(
  name: string,
  rv: string,
  o: { done?: boolean; gated?: boolean; policy?: string; status?: Record<string, unknown> } = {},
): RunObj {
  return {
    apiVersion: "tekton.dev/v1",
    kind: "PipelineRun",
    metadata: {
      name,
      namespace: NS,
      uid: `uid-${name}`,
      resourceVersion: rv,
      labels: { [MANAGED]: "true" },
      annotations: {
        [POLICY]: o.policy ?? "p",
        ...(o.gated ? { [GATED]: "true" } : {}),
      },
    },
    spec: o.gated ? { status: "PipelineRunPending" } : {},
    status: {
      conditions: [
        o.done
          ? { type: "Succeeded", status: "True", reason: "Succeeded" }
          : { type: "Succeeded", status: "Unknown", reason: "Running" },
      ],
      ...o.status,
    },
  } as RunObj;
}

function policy(name: string, rv: string, generation: number, app: string, status?: unknown): PolicyObj {
  return {
    apiVersion: "affinity.tekton.dev/v1alpha1",
    kind: "AffinityPolicy",
    metadata: { name, namespace: NS, resourceVersion: rv, generation },
    spec: { mode: "workspaces", pipelineRunSelector: { matchLabels: { app } } },
    ...(status ? { status } : {}),
  } as PolicyObj;
}

function placeholderPod(name: string, runName: string, rv: string, nodeName?: string): k8s.V1Pod {
  return {
    metadata: {
      name,
      namespace: NS,
      uid: `uid-${name}`,
      resourceVersion: rv,
      labels: { [RUN_LABEL]: runName },
    },
    spec: { containers: [], ...(nodeName ? { nodeName } : {}) },
    status: nodeName ? { conditions: [{ type: "PodScheduled", status: "True" }] } : {},
  };
}

function node(name: string, rv: string, o: { unschedulable?: boolean; heartbeat?: number } = {}): k8s.V1Node {
  return {
    metadata: { name, resourceVersion: rv, labels: { "kubernetes.io/hostname": name } },
    spec: o.unschedulable ? { unschedulable: true } : {},
    status: {
      allocatable: { cpu: "4", pods: "110" },
      conditions: [{ type: "Ready", status: "True", lastHeartbeatTime: new Date(o.heartbeat ?? 0) }],
    },
  } as k8s.V1Node;
}

describe("watches: run events", () => {
  it("a new run is work for itself and its policy's count; Tekton's status-only write is nothing", () => {
    const w = wire();
    w.start();
    w.caches.runs.change(run("a", "1"));
    expect(w.sink.take()).to.have.members([
      "run team-a/a <- PipelineRun/team-a/a@1",
      "count team-a/p <- PipelineRun/team-a/a@1",
    ]);
    w.caches.runs.change(
      run("a", "2", { status: { startTime: "2024-01-01T00:00:00Z", childReferences: [{ name: "a-t1" }] } }),
    );
    expect(w.sink.take()).to.deep.equal([]);
  });

  it("a run becoming done enqueues the run and its policy count, with the event as cause", () => {
    const w = wire();
    w.start();
    w.caches.runs.change(run("a", "1"));
    w.sink.take();
    w.caches.runs.change(run("a", "3", { done: true }));
    expect(w.sink.take()).to.have.members([
      "run team-a/a <- PipelineRun/team-a/a@3",
      "count team-a/p <- PipelineRun/team-a/a@3",
    ]);
  });

  it("a run change that is not a start or finish is work for the run only", () => {
    const w = wire();
    w.start();
    w.caches.runs.change(run("a", "1", { gated: true }));
    w.sink.take();
    w.caches.runs.change(run("a", "2"));
    expect(w.sink.take()).to.deep.equal(["run team-a/a <- PipelineRun/team-a/a@2"]);
  });

  it("our own write is no news to either watch; both still see the next real change", () => {
    const w = wire();
    w.start();
    w.caches.runs.change(run("a", "1", { gated: true }));
    w.sink.take();
    const ours = run("a", "2");
    w.runFilter.observe(runKey(ours), ours);
    w.caches.runs.change(ours);
    expect(w.sink.take()).to.deep.equal([]);
    w.caches.runs.change(run("a", "3", { done: true }));
    expect(w.sink.take()).to.have.members([
      "run team-a/a <- PipelineRun/team-a/a@3",
      "count team-a/p <- PipelineRun/team-a/a@3",
    ]);
  });

  it("a run gone is work for its policy's count only, and is new again if it comes back", () => {
    const w = wire();
    w.start();
    w.caches.runs.change(run("a", "1"));
    w.sink.take();
    w.caches.runs.delete(run("a", "4"));
    expect(w.sink.take()).to.deep.equal(["count team-a/p <- PipelineRun/team-a/a@4/deleted"]);
    w.caches.runs.change(run("a", "5"));
    expect(w.sink.take()).to.have.members([
      "run team-a/a <- PipelineRun/team-a/a@5",
      "count team-a/p <- PipelineRun/team-a/a@5",
    ]);
  });

  it("each file enqueues only its own reconciler's work", () => {
    const runsOnly = wire("runs");
    runsOnly.start();
    runsOnly.caches.runs.change(run("a", "1"));
    expect(runsOnly.sink.take()).to.deep.equal(["run team-a/a <- PipelineRun/team-a/a@1"]);
    const policiesOnly = wire("policies");
    policiesOnly.start();
    policiesOnly.caches.runs.change(run("a", "1"));
    expect(policiesOnly.sink.take()).to.deep.equal(["count team-a/p <- PipelineRun/team-a/a@1"]);
  });
});

describe("watches: placeholders, FailedCreate events and nodes", () => {
  it("a placeholder pod being scheduled enqueues its run; its creation and a done run's do not", () => {
    const w = wire();
    w.caches.runs.seed(run("a", "1"));
    w.caches.runs.seed(run("old", "1", { done: true }));
    w.start();
    w.caches.placeholderPods.change(placeholderPod("a-ph-0", "a", "10"));
    expect(w.sink.take()).to.deep.equal([]);
    w.caches.placeholderPods.change(placeholderPod("a-ph-0", "a", "11", "n1"));
    expect(w.sink.take()).to.deep.equal(["run team-a/a <- Pod/team-a/a-ph-0@11"]);
    w.caches.placeholderPods.change(placeholderPod("old-ph-0", "old", "12", "n1"));
    expect(w.sink.take()).to.deep.equal([]);
  });

  it("a FailedCreate event of a placeholder StatefulSet enqueues its run", () => {
    const w = wire();
    w.caches.placeholderSets.seed({
      metadata: { name: "a-ph", namespace: NS, uid: "s1", labels: { [RUN_LABEL]: "a" } },
    });
    w.start();
    w.caches.failedCreates.change({
      metadata: { name: "a-ph.1", namespace: NS, resourceVersion: "20" },
      involvedObject: { kind: "StatefulSet", name: "a-ph", namespace: NS },
    });
    expect(w.sink.take()).to.deep.equal(["run team-a/a <- Event/team-a/a-ph.1@20"]);
  });

  it("a node cordoned enqueues the runs with placeholders on it and the runs that wait; a heartbeat nothing", () => {
    const w = wire();
    w.caches.nodes.seed(node("n1", "1"));
    w.caches.nodes.seed(node("n2", "1"));
    w.caches.runs.seed(run("a", "1"));
    w.caches.runs.seed(run("b", "1"));
    w.caches.runs.seed(run("w", "1", { gated: true }));
    w.caches.placeholderPods.seed(placeholderPod("a-ph-0", "a", "1", "n1"));
    w.caches.placeholderPods.seed(placeholderPod("b-ph-0", "b", "1", "n2"));
    w.start();
    w.caches.nodes.change(node("n1", "30", { heartbeat: 5000 }));
    expect(w.sink.take()).to.deep.equal([]);
    w.caches.nodes.change(node("n1", "31", { unschedulable: true }));
    expect(w.sink.take()).to.have.members(["run team-a/a <- Node//n1@31", "run team-a/w <- Node//n1@31"]);
  });
});

describe("watches: policies and namespaces", () => {
  function withPolicies(which: "both" | "runs" | "policies" = "both") {
    const w = wire(which);
    w.caches.runs.seed(run("w-p", "1", { gated: true, policy: "p" }));
    w.caches.runs.seed(run("w-q", "1", { gated: true, policy: "q" }));
    w.caches.runs.seed(run("r-p", "1", { policy: "p" }));
    w.start();
    w.caches.policies.change(policy("p", "1", 1, "x"));
    w.caches.policies.change(policy("q", "2", 1, "x"));
    w.caches.policies.change(policy("s", "3", 1, "y"));
    w.sink.take();
    return w;
  }
  const pGen2 = [
    "policy team-a/p <- AffinityPolicy/team-a/p@10",
    "policy team-a/q <- AffinityPolicy/team-a/p@10",
    "run team-a/w-p <- AffinityPolicy/team-a/p@10",
  ];

  it("a new generation enqueues the policy, the policy it overlaps and the runs that wait under it", () => {
    const w = withPolicies();
    w.caches.policies.change(policy("p", "10", 2, "x"));
    expect(w.sink.take()).to.have.members(pGen2);
  });

  it("the policy watches enqueue the policies, the run watches the waiting runs", () => {
    const policies = withPolicies("policies");
    policies.caches.policies.change(policy("p", "10", 2, "x"));
    expect(policies.sink.take()).to.deep.equal(pGen2.slice(0, 2));
    const runs = withPolicies("runs");
    runs.caches.policies.change(policy("p", "10", 2, "x"));
    expect(runs.sink.take()).to.deep.equal(pGen2.slice(2));
  });

  it("a status-only update (same generation) enqueues nothing", () => {
    const w = withPolicies();
    w.caches.policies.change(policy("p", "11", 1, "x", { activeRuns: 3 }));
    expect(w.sink.take()).to.deep.equal([]);
  });

  it("a policy deleted enqueues its siblings; recreated at generation 1, it is new to both watches", () => {
    const w = withPolicies();
    w.caches.policies.delete(policy("p", "12", 1, "x"));
    expect(w.sink.take()).to.deep.equal(["policy team-a/q <- AffinityPolicy/team-a/p@12/deleted"]);
    w.caches.policies.change(policy("p", "13", 1, "x"));
    expect(w.sink.take()).to.have.members([
      "policy team-a/p <- AffinityPolicy/team-a/p@13",
      "policy team-a/q <- AffinityPolicy/team-a/p@13",
      "run team-a/w-p <- AffinityPolicy/team-a/p@13",
    ]);
  });

  it("a namespace's change enqueues its policies", () => {
    const w = withPolicies();
    w.caches.namespaces.change({ metadata: { name: NS, resourceVersion: "40" } });
    expect(w.sink.take()).to.have.members([
      "policy team-a/p <- Namespace//team-a@40",
      "policy team-a/q <- Namespace//team-a@40",
      "policy team-a/s <- Namespace//team-a@40",
    ]);
  });
});
