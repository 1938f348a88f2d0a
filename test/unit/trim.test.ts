import type { V1Node, V1Pod, V1StatefulSet } from "@kubernetes/client-node";
import { expect } from "chai";
import { PLACEHOLDER_RUN_UID_LABEL } from "../../src/api/constants.js";
import type { PipelineRun } from "../../src/api/types.js";
import {
  trimNamespace,
  trimNode,
  trimPlaceholderPod,
  trimPlaceholderSet,
  trimRun,
  withoutManagedFields,
} from "../../src/kube/trim.js";
import { planPlaceholders } from "../../src/placement/plan.js";
import { placeholderStatefulSet } from "../../src/placement/statefulset.js";
import {
  nodeSchedulingFingerprint,
  placeholderPodFingerprint,
  placeholderSetFingerprint,
} from "../../src/reconcilers/change-filter.js";
import { nodeProblem } from "../../src/reconcilers/node-health.js";
import { NodeTracker } from "../../src/reconcilers/node-tracker.js";
import { isDone } from "../../src/reconcilers/run-decisions.js";

const NOW = Date.parse("2026-03-01T12:00:00Z");

/** A node as a kubelet reports it: most of it is what the controller never reads. */
function kubeletNode(over: { unschedulable?: boolean; ready?: string; taint?: boolean } = {}): V1Node {
  return {
    apiVersion: "v1",
    kind: "Node",
    metadata: {
      name: "node-7",
      uid: "u-7",
      resourceVersion: "4711",
      labels: { "kubernetes.io/hostname": "node-7", "topology.kubernetes.io/zone": "zone-b" },
      annotations: { "csi.volume.kubernetes.io/nodeid": "x".repeat(2000) },
      managedFields: [{ manager: "kubelet", operation: "Update", fieldsV1: { big: "y".repeat(5000) } }],
    },
    spec: {
      unschedulable: over.unschedulable,
      podCIDR: "10.0.7.0/24",
      taints: over.taint ? [{ key: "team", value: "a", effect: "NoSchedule" }] : undefined,
    },
    status: {
      allocatable: { cpu: "8", memory: "32Gi", pods: "110" },
      capacity: { cpu: "8", memory: "32Gi", pods: "110" },
      images: Array.from({ length: 50 }, (_, i) => ({ names: [`registry/image-${i}:latest`], sizeBytes: i })),
      nodeInfo: {
        architecture: "amd64",
        bootID: "b",
        containerRuntimeVersion: "c",
        kernelVersion: "k",
        kubeProxyVersion: "",
        kubeletVersion: "v1.35.0",
        machineID: "m",
        operatingSystem: "linux",
        osImage: "o",
        systemUUID: "s",
      },
      addresses: [{ type: "InternalIP", address: "10.1.0.7" }],
      conditions: [
        { type: "MemoryPressure", status: "False", lastHeartbeatTime: new Date(NOW) },
        {
          type: "Ready",
          status: over.ready ?? "True",
          reason: "KubeletReady",
          message: "kubelet is posting ready status",
          lastHeartbeatTime: new Date(NOW),
          lastTransitionTime: new Date(NOW - 60_000),
        },
      ],
    },
  };
}

describe("cache trimming", () => {
  it("keeps every node field that placement and migration decide on", () => {
    for (const over of [{}, { unschedulable: true }, { ready: "False" }, { taint: true }]) {
      const full = kubeletNode(over);
      const trimmed = trimNode(full);
      expect(nodeProblem(trimmed, [], NOW, 30_000)).to.deep.equal(nodeProblem(full, [], NOW, 30_000));
      expect(nodeSchedulingFingerprint(trimmed)).to.equal(nodeSchedulingFingerprint(full));
      const a = new NodeTracker();
      const b = new NodeTracker();
      a.observe(full, NOW);
      b.observe(trimmed, NOW);
      expect(b.troubleSince("node-7", NOW + 1)).to.equal(a.troubleSince("node-7", NOW + 1));
    }
  });

  it("keeps identity and the resourceVersion watches resume from", () => {
    const trimmed = trimNode(kubeletNode());
    expect(trimmed.metadata).to.include({ name: "node-7", uid: "u-7", resourceVersion: "4711" });
    expect(trimmed.metadata?.labels).to.have.property("topology.kubernetes.io/zone", "zone-b");
  });

  it("drops what a kubelet writes and the controller never reads, and does not touch the original", () => {
    const full = kubeletNode();
    const trimmed = trimNode(full);
    expect(trimmed.status?.images).to.equal(undefined);
    expect(trimmed.status?.nodeInfo).to.equal(undefined);
    expect(trimmed.metadata?.managedFields).to.equal(undefined);
    expect(trimmed.metadata?.annotations).to.equal(undefined);
    expect(trimmed.status?.conditions?.map((c) => c.type)).to.deep.equal(["Ready"]);
    expect(JSON.stringify(trimmed).length).to.be.below(JSON.stringify(full).length / 10);
    expect(full.status?.images).to.have.length(50);
  });

  it("keeps a namespace's labels and drops managedFields from any object", () => {
    const ns = trimNamespace({
      metadata: {
        name: "team-a",
        labels: { "affinity.tekton.dev/isolation-group": "g" },
        managedFields: [{ manager: "kubectl" }],
      },
      spec: { finalizers: ["kubernetes"] },
    });
    expect(ns.metadata).to.deep.include({
      name: "team-a",
      labels: { "affinity.tekton.dev/isolation-group": "g" },
    });
    expect(ns.metadata?.managedFields).to.equal(undefined);
    const pod = withoutManagedFields({
      metadata: { name: "p", managedFields: [{ manager: "x" }] },
      spec: {},
    });
    expect(pod.metadata).to.deep.equal({ name: "p" });
    expect(pod).to.have.property("spec");
  });

  it("keeps a run's metadata, spec and Succeeded condition, and drops Tekton's status payload", () => {
    const spec = {
      pipelineRef: { name: "build" },
      workspaces: [{ name: "src", volumeClaimTemplate: { spec: { accessModes: ["ReadWriteOnce"] } } }],
      taskRunSpecs: [{ pipelineTaskName: "big", computeResources: { requests: { cpu: "2" } } }],
    };
    const conditions = [{ type: "Succeeded", status: "True", reason: "Succeeded" }];
    const full = {
      apiVersion: "tekton.dev/v1",
      kind: "PipelineRun",
      metadata: {
        name: "build-1",
        namespace: "team-a",
        resourceVersion: "99",
        labels: { "affinity.tekton.dev/managed": "true" },
        annotations: {
          "affinity.tekton.dev/policy": "default",
          "kubectl.kubernetes.io/last-applied-configuration": JSON.stringify({ spec }),
        },
        managedFields: [{ manager: "tekton", operation: "Update" }],
      },
      spec,
      status: {
        conditions,
        startTime: "2026-03-01T12:00:00Z",
        completionTime: "2026-03-01T12:01:00Z",
        pipelineSpec: { tasks: Array.from({ length: 20 }, (_, i) => ({ name: `t${i}` })) },
        provenance: { featureFlags: { coschedule: "workspaces" } },
        childReferences: [{ name: "build-1-t0", kind: "TaskRun" }],
      },
    };
    const copy = structuredClone(full);
    const trimmed = trimRun(full);
    expect(trimmed.spec).to.deep.equal(spec);
    expect(trimmed.metadata).to.deep.equal({
      name: "build-1",
      namespace: "team-a",
      resourceVersion: "99",
      labels: { "affinity.tekton.dev/managed": "true" },
      annotations: { "affinity.tekton.dev/policy": "default" },
    });
    expect(trimmed.status).to.deep.equal({
      conditions,
      startTime: "2026-03-01T12:00:00Z",
      completionTime: "2026-03-01T12:01:00Z",
    });
    expect(isDone(trimmed as never)).to.equal(true);
    expect(JSON.stringify(trimmed).length).to.be.below(JSON.stringify(full).length / 2);
    expect(full, "the original is untouched").to.deep.equal(copy);
    const { status: _none, ...fresh } = copy;
    expect(trimRun(fresh)).to.not.have.property("status");
  });

  it("drops the spec of a finished run once it is cleaned up, and only then", () => {
    const spec = { pipelineSpec: { tasks: [{ name: "build" }] }, workspaces: [{ name: "src" }] };
    const run = (annotations: Record<string, string>, succeeded?: string) => ({
      apiVersion: "tekton.dev/v1",
      kind: "PipelineRun",
      metadata: { name: "r", namespace: "team-a", annotations },
      spec,
      ...(succeeded ? { status: { conditions: [{ type: "Succeeded", status: succeeded }] } } : {}),
    });
    const cleaned = { "affinity.tekton.dev/cleaned-up": "true" };
    expect(trimRun(run(cleaned, "True")).spec).to.deep.equal({});
    expect(trimRun(run(cleaned, "False")).spec).to.deep.equal({});
    // Cleanup still reads the workspaces (template claims to delete) until it has happened.
    expect(trimRun(run({}, "True")).spec).to.deep.equal(spec);
    // A run that is not finished keeps its spec whatever its annotations say.
    expect(trimRun(run(cleaned, "Unknown")).spec).to.deep.equal(spec);
    expect(trimRun(run(cleaned)).spec).to.deep.equal(spec);
  });
});

describe("trimPlaceholderSet and trimPlaceholderPod (objects any tenant can imitate)", () => {
  const big = "x".repeat(50_000);
  const run = { metadata: { name: "r", namespace: "team-a", uid: "run-uid" }, spec: {} } as PipelineRun;
  const plan = planPlaceholders(run, "pipelineruns")[0]!;
  const ours = (): V1StatefulSet => {
    const set = placeholderStatefulSet(run, { mode: "pipelineruns" }, plan);
    set.metadata!.uid = "set-uid";
    set.metadata!.annotations = {
      ...set.metadata!.annotations,
      "affinity.tekton.dev/evicted-from": "node-a",
      big,
    };
    return set;
  };
  const pod = (): V1Pod => ({
    metadata: {
      name: `${plan.name}-0`,
      namespace: "team-a",
      uid: "pod-uid",
      labels: { ...ours().spec!.template.metadata!.labels, "controller-revision-hash": "abc" },
      annotations: { big },
      ownerReferences: [
        { apiVersion: "apps/v1", kind: "StatefulSet", name: plan.name, uid: "set-uid", controller: true },
      ],
    },
    spec: {
      nodeName: "node-a",
      tolerations: [{ key: "k", operator: "Exists" }],
      containers: [{ name: "placeholder", image: "pause", env: [{ name: "BIG", value: big }] }],
    },
    status: {
      phase: "Running",
      conditions: [
        { type: "PodScheduled", status: "True" },
        { type: "Ready", status: "True", message: big },
      ],
    },
  });

  it("keeps everything the run reconciler reads: its fingerprints are unchanged", () => {
    expect(placeholderSetFingerprint(trimPlaceholderSet(ours()))).to.equal(placeholderSetFingerprint(ours()));
    expect(placeholderPodFingerprint(trimPlaceholderPod(pod()))).to.equal(placeholderPodFingerprint(pod()));
    const set = trimPlaceholderSet(ours());
    expect(set.metadata?.labels?.[PLACEHOLDER_RUN_UID_LABEL]).to.equal("run-uid");
    expect(set.metadata?.annotations?.["affinity.tekton.dev/evicted-from"]).to.equal("node-a");
    const p = trimPlaceholderPod(pod());
    expect(p.spec?.tolerations).to.deep.equal([{ key: "k", operator: "Exists" }]);
    expect(p.metadata?.ownerReferences?.[0]?.uid).to.equal("set-uid");
  });

  it("makes a decoy with 50 KB of annotations cost a few hundred bytes", () => {
    for (const trimmed of [trimPlaceholderSet(ours()), trimPlaceholderPod(pod())]) {
      expect(JSON.stringify(trimmed).length).to.be.below(1_500);
      expect(JSON.stringify(trimmed)).to.not.contain("xxxx");
    }
  });
});
