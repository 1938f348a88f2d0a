import type { V1Node, V1Pod, V1StatefulSet } from "@kubernetes/client-node";
import { expect } from "chai";
import type { PipelineRun } from "../../src/api/types.js";
import {
  ChangeFilter,
  nodeSchedulingFingerprint,
  placeholderPodFingerprint,
  placeholderPodIsNoNews,
  placeholderSetFingerprint,
  runFingerprint,
} from "../../src/reconcilers/change-filter.js";

function run(
  over: { labels?: Record<string, string>; annotations?: Record<string, string> } = {},
): PipelineRun {
  return {
    apiVersion: "tekton.dev/v1",
    kind: "PipelineRun",
    metadata: {
      name: "r",
      namespace: "ns",
      uid: "u1",
      labels: { "affinity.tekton.dev/managed": "true", app: "x", ...over.labels },
      annotations: { "affinity.tekton.dev/gated": "true", ...over.annotations },
    },
    spec: { status: "PipelineRunPending" },
    status: { conditions: [{ type: "Succeeded", status: "Unknown", reason: "Running" }] },
  } as PipelineRun;
}

const node = (): V1Node => ({
  metadata: { name: "n1", labels: { "kubernetes.io/hostname": "n1" } },
  spec: {},
  status: {
    allocatable: { cpu: "4", pods: "110" },
    conditions: [
      { type: "Ready", status: "True", lastHeartbeatTime: new Date(1000), lastTransitionTime: new Date(0) },
    ],
  },
});

describe("ChangeFilter", () => {
  it("passes a new object and a changed one, and holds back the same fingerprint", () => {
    const f = new ChangeFilter((s: string) => s.slice(0, 1));
    expect(f.changed("k", "a1")).to.equal(true);
    expect(f.changed("k", "a2")).to.equal(false);
    expect(f.changed("k", "b1")).to.equal(true);
    f.forget("k");
    expect(f.changed("k", "b1")).to.equal(true);
  });

  it("holds back an object first seen in a state that is no news, and our own writes", () => {
    const f = new ChangeFilter(
      (s: string) => s,
      (s) => s === "created",
    );
    expect(f.changed("k", "created")).to.equal(false);
    expect(f.changed("k", "scheduled")).to.equal(true);
    f.observe("k", "released by us");
    expect(f.changed("k", "released by us")).to.equal(false);
    expect(f.changed("k", "done")).to.equal(true);
  });
});

describe("what counts as a change", () => {
  it("a run: our marks, the gate, completion and deletion do; Tekton's status writes and others' labels do not", () => {
    const base = runFingerprint(run());
    const tektonWrite = run();
    tektonWrite.status = {
      ...tektonWrite.status,
      childReferences: [{ name: "t1" }],
      startTime: "now",
    } as never;
    expect(runFingerprint(tektonWrite)).to.equal(base);
    expect(runFingerprint(run({ labels: { app: "y" } }))).to.equal(base);
    const started = run();
    started.status = {};
    expect(runFingerprint(started), "no condition and Unknown are both running").to.equal(base);

    expect(runFingerprint(run({ annotations: { "affinity.tekton.dev/waiting-for": "x" } }))).not.to.equal(
      base,
    );
    const released = run();
    released.spec.status = undefined;
    expect(runFingerprint(released)).not.to.equal(base);
    const done = run();
    done.status!.conditions![0]!.status = "True";
    expect(runFingerprint(done)).not.to.equal(base);
    const deleting = run();
    deleting.metadata.deletionTimestamp = "2026-01-01T00:00:00Z";
    expect(runFingerprint(deleting)).not.to.equal(base);
  });

  it("a node: a heartbeat does not; cordon, taint, readiness, labels and room do", () => {
    const base = nodeSchedulingFingerprint(node());
    const heartbeat = node();
    heartbeat.status!.conditions![0]!.lastHeartbeatTime = new Date(99_000);
    expect(nodeSchedulingFingerprint(heartbeat)).to.equal(base);

    const cordoned = node();
    cordoned.spec!.unschedulable = true;
    const tainted = node();
    tainted.spec!.taints = [{ key: "k", effect: "NoSchedule" }];
    const notReady = node();
    notReady.status!.conditions![0]!.status = "False";
    const relabelled = node();
    relabelled.metadata!.labels!["topology.kubernetes.io/zone"] = "b";
    const smaller = node();
    smaller.status!.allocatable!.cpu = "2";
    for (const changed of [cordoned, tainted, notReady, relabelled, smaller])
      expect(nodeSchedulingFingerprint(changed)).not.to.equal(base);
  });

  // The nodes cache gets the list through client-node's typed deserializer and watch events as raw
  // JSON: the same node must fingerprint the same either way, or every tainted node's first watch event
  // after a start or relist re-queues runs.
  const watched = (taints: string): V1Node =>
    JSON.parse(`{
      "metadata": { "name": "n1", "labels": { "kubernetes.io/hostname": "n1", "pool": "ci" } },
      "spec": { "taints": ${taints}, "unschedulable": true },
      "status": {
        "allocatable": { "cpu": "4", "memory": "8Gi", "pods": "110" },
        "conditions": [
          { "type": "Ready", "status": "True", "lastHeartbeatTime": "2026-01-01T00:00:10Z",
            "lastTransitionTime": "2026-01-01T00:00:00Z", "reason": "KubeletReady", "message": "ok" }
        ]
      }
    }`);
  const rawTaints = `[
    { "key": "dedicated", "value": "ci", "effect": "NoSchedule", "timeAdded": "2026-01-01T00:00:00Z" },
    { "key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule", "timeAdded": "2026-01-01T00:00:05Z" }
  ]`;
  // As V1Node's deserializer builds it: attribute-map key order, Dates for date-times.
  const listed = (): V1Node => ({
    metadata: { labels: { pool: "ci", "kubernetes.io/hostname": "n1" }, name: "n1" },
    spec: {
      taints: [
        { effect: "NoSchedule", key: "dedicated", timeAdded: new Date("2026-01-01T00:00:00Z"), value: "ci" },
        {
          effect: "NoSchedule",
          key: "node.kubernetes.io/unschedulable",
          timeAdded: new Date("2026-01-01T00:00:05Z"),
        },
      ],
      unschedulable: true,
    },
    status: {
      allocatable: { pods: "110", memory: "8Gi", cpu: "4" },
      conditions: [
        {
          lastHeartbeatTime: new Date("2026-01-01T00:00:10Z"),
          lastTransitionTime: new Date("2026-01-01T00:00:00Z"),
          message: "ok",
          reason: "KubeletReady",
          status: "True",
          type: "Ready",
        },
      ],
    },
  });

  it("a node: the typed list and the raw watch give the same node the same fingerprint", () => {
    expect(nodeSchedulingFingerprint(listed())).to.equal(nodeSchedulingFingerprint(watched(rawTaints)));

    const f = new ChangeFilter(nodeSchedulingFingerprint);
    f.changed("n1", listed());
    expect(f.changed("n1", watched(rawTaints)), "first watch event after a list").to.equal(false);

    const retimed = listed();
    retimed.spec!.taints![0]!.timeAdded = new Date("2026-02-01T00:00:00Z");
    expect(nodeSchedulingFingerprint(retimed), "timeAdded is not a change").to.equal(
      nodeSchedulingFingerprint(listed()),
    );
    const reordered = listed();
    reordered.spec!.taints!.reverse();
    expect(nodeSchedulingFingerprint(reordered)).to.equal(nodeSchedulingFingerprint(listed()));
  });

  it("a node: a real taint change differs between the typed list and the raw watch", () => {
    const base = nodeSchedulingFingerprint(listed());
    const revalued = rawTaints.replace(`"value": "ci"`, `"value": "gpu"`);
    const reeffected = rawTaints.replace(
      `"effect": "NoSchedule", "timeAdded": "2026-01-01T00:00:00Z"`,
      `"effect": "NoExecute", "timeAdded": "2026-01-01T00:00:00Z"`,
    );
    const removed = `[${rawTaints.slice(rawTaints.indexOf("},") + 2)}`;
    const added = rawTaints.replace("[", `[{ "key": "gpu", "effect": "PreferNoSchedule" },`);
    for (const taints of [revalued, reeffected, removed, added]) {
      expect(taints).not.to.equal(rawTaints);
      expect(nodeSchedulingFingerprint(watched(taints)), taints).not.to.equal(base);
    }
  });

  it("a placeholder pod: scheduling, its reason, deletion and owner do; readiness and IPs do not", () => {
    const pod = (): V1Pod => ({
      metadata: { name: "p-0", uid: "p", ownerReferences: [{ controller: true, uid: "s1" } as never] },
      spec: { containers: [] },
      status: {
        phase: "Pending",
        conditions: [{ type: "PodScheduled", status: "False", message: "0/3 nodes" }],
      },
    });
    const base = placeholderPodFingerprint(pod());
    const ip = pod();
    ip.status!.podIP = "10.0.0.1";
    expect(placeholderPodFingerprint(ip)).to.equal(base);
    const scheduled = pod();
    scheduled.spec!.nodeName = "n1";
    const otherReason = pod();
    otherReason.status!.conditions![0]!.message = "1/3 nodes";
    const newOwner = pod();
    newOwner.metadata!.ownerReferences![0]!.uid = "s2";
    for (const changed of [scheduled, otherReason, newOwner])
      expect(placeholderPodFingerprint(changed)).not.to.equal(base);
    expect(placeholderPodIsNoNews({ metadata: {}, spec: { containers: [] } })).to.equal(true);
    expect(placeholderPodIsNoNews(scheduled)).to.equal(false);
    expect(placeholderPodIsNoNews(pod()), "refused by the scheduler").to.equal(false);
  });

  it("a placeholder StatefulSet: its status counters do not; its template hash does", () => {
    const set = (): V1StatefulSet => ({
      metadata: { name: "s", uid: "s1", annotations: { "affinity.tekton.dev/template-hash": "h1" } },
      status: { replicas: 0 },
    });
    const base = placeholderSetFingerprint(set());
    const counted = set();
    counted.status = { replicas: 1, readyReplicas: 1 };
    expect(placeholderSetFingerprint(counted)).to.equal(base);
    const rehashed = set();
    rehashed.metadata!.annotations!["affinity.tekton.dev/template-hash"] = "h2";
    expect(placeholderSetFingerprint(rehashed)).not.to.equal(base);
  });
});
