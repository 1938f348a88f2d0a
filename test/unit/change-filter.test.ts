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
} from "../../src/controller/change-filter.js";

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
