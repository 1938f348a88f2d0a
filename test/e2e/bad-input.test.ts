// What a namespace owner or user can get wrong, and what they see: a missing service account, a
// placeholder deleted by hand, a task binding two PVC workspaces in workspaces mode. Plus: a pod's own
// affinity survives ours, and no pod outside a managed run ever reaches the pod webhook.

import { readFileSync } from "node:fs";
import { expect } from "chai";
import { GROUP, PLURAL, VERSION } from "../../src/api/constants.js";
import type { AffinityPolicy } from "../../src/api/types.js";
import { UNSATISFIABLE_REASON } from "../../src/reconcilers/pipelinerun.js";
import { waitFor } from "../cluster/kube.js";
import { e2e } from "./env.js";
import {
  applyPolicy,
  createNamespace,
  createRun,
  getRun,
  pipelineRun,
  placeholderPods,
  RWO_TEMPLATE,
  taskPods,
  waitForEvent,
  waitRunSucceeded,
} from "./helpers.js";

/** Pod admission requests the controller answered for a namespace (its debug "admission" log lines). */
function podAdmissions(log: string, namespace: string): number {
  return readFileSync(log, "utf8")
    .split("\n")
    .filter(
      (l) =>
        l.includes('"msg":"admission"') &&
        l.includes('"webhook":"pods"') &&
        l.includes(`"namespace":"${namespace}"`),
    ).length;
}

describe("bad input and its visible consequences", function () {
  this.timeout(180_000);

  it("a policy naming a missing service account says so; its runs wait visibly and start once it exists", async () => {
    const { cluster } = await e2e();
    const ns = await createNamespace(cluster, "missing-sa");
    await cluster.clients.custom.createNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      plural: PLURAL,
      namespace: ns,
      body: {
        apiVersion: `${GROUP}/${VERSION}`,
        kind: "AffinityPolicy",
        metadata: { name: "default" },
        spec: { mode: "pipelineruns", placeholder: { serviceAccountName: "builder" } },
      },
    });
    const policy = await waitFor("Ready=False ServiceAccountNotFound", async () => {
      const p = (await cluster.clients.custom.getNamespacedCustomObject({
        group: GROUP,
        version: VERSION,
        plural: PLURAL,
        namespace: ns,
        name: "default",
      })) as AffinityPolicy;
      return p.status?.conditions?.find((c) => c.type === "Ready" && c.reason === "ServiceAccountNotFound");
    });
    expect(policy.message).to.contain('"builder" does not exist');
    const run = await createRun(cluster, pipelineRun(ns, { tasks: [{ name: "a" }] }));
    const waiting = await waitForEvent(cluster, ns, run.metadata.name, "Waiting", {
      type: "Warning",
      timeoutMs: 60_000,
    });
    // The StatefulSet controller's own reason (its FailedCreate event), at once.
    expect(waiting.message).to.contain("cannot be created");
    expect(waiting.message).to.contain('"builder" not found');
    await cluster.clients.core.createNamespacedServiceAccount({
      namespace: ns,
      body: { metadata: { name: "builder" } },
    });
    await waitRunSucceeded(cluster, ns, run.metadata.name, 150_000);
  });

  it("a placeholder StatefulSet deleted by hand is recreated and the run still succeeds", async () => {
    const { cluster } = await e2e();
    const ns = await createNamespace(cluster, "deleted-sts");
    await applyPolicy(cluster, ns, { mode: "pipelineruns" });
    const run = await createRun(
      cluster,
      pipelineRun(ns, {
        tasks: [
          { name: "a", seconds: 10 },
          { name: "b", runAfter: ["a"] },
        ],
      }),
    );
    const [before] = await waitFor("placeholder", async () => {
      const pods = await placeholderPods(cluster, ns, run.metadata.uid!);
      return pods[0]?.spec?.nodeName ? pods : undefined;
    });
    const setName = before!.metadata!.labels!["affinity.tekton.dev/placeholder"]!;
    const original = await cluster.clients.apps.readNamespacedStatefulSet({ name: setName, namespace: ns });
    await cluster.clients.apps.deleteNamespacedStatefulSet({ name: setName, namespace: ns });
    await waitFor("placeholder StatefulSet recreated", async () => {
      const set = await cluster.clients.apps.readNamespacedStatefulSet({ name: setName, namespace: ns });
      return set.metadata?.uid !== original.metadata?.uid;
    });
    await waitRunSucceeded(cluster, ns, run.metadata.name);
    const nodes = new Set(
      [...(await taskPods(cluster, ns, run.metadata.name)).values()].map((p) => p.spec?.nodeName),
    );
    expect(nodes.size).to.equal(1);
  });

  it("workspaces mode: a task binding two PVC workspaces fails at once, before anything is created, saying why", async () => {
    const { cluster } = await e2e();
    const ns = await createNamespace(cluster, "two-pvcs");
    await applyPolicy(cluster, ns, { mode: "workspaces" });
    const run = await createRun(
      cluster,
      pipelineRun(ns, {
        workspaces: { src: RWO_TEMPLATE, cache: RWO_TEMPLATE },
        tasks: [
          { name: "first", workspaces: ["src"] },
          { name: "both", runAfter: ["first"], workspaces: ["src", "cache"] },
        ],
      }),
    );
    const failed = await waitFor(
      "the run to fail",
      async () => {
        const r = await getRun(cluster, ns, run.metadata.name);
        return r.status?.conditions?.find((c) => c.type === "Succeeded" && c.status === "False");
      },
      { timeoutMs: 60_000 },
    );
    expect(failed.reason).to.equal(UNSATISFIABLE_REASON);
    expect(failed.message).to.contain('task "both"').and.contain("(src, cache)");
    await waitForEvent(cluster, ns, run.metadata.name, "Unsatisfiable");
    // Nothing was made for it: no placeholder, no claim, no TaskRun.
    const uid = (await getRun(cluster, ns, run.metadata.name)).metadata.uid!;
    expect(await placeholderPods(cluster, ns, uid)).to.deep.equal([]);
    const sets = await cluster.clients.apps.listNamespacedStatefulSet({ namespace: ns });
    expect(sets.items.map((s) => s.metadata?.name)).to.deep.equal([]);
    const claims = await cluster.clients.core.listNamespacedPersistentVolumeClaim({ namespace: ns });
    expect(claims.items.map((c) => c.metadata?.name)).to.deep.equal([]);
    expect(await cluster.kubectlRun("get", "taskruns", "-n", ns, "-o", "name")).to.equal("");
  });

  it("workspaces mode: with a pipelineRef, the pods webhook refuses such a task's pod, saying why", async () => {
    const { cluster } = await e2e();
    const ns = await createNamespace(cluster, "two-pvcs-ref");
    await applyPolicy(cluster, ns, { mode: "workspaces" });
    // The same pipeline, referenced: the controller cannot see its tasks, so the run is placed and the
    // task's pod is refused by the pods webhook.
    const inline = pipelineRun(ns, {
      workspaces: { src: RWO_TEMPLATE, cache: RWO_TEMPLATE },
      tasks: [{ name: "both", workspaces: ["src", "cache"] }],
    });
    await cluster.clients.custom.createNamespacedCustomObject({
      group: "tekton.dev",
      version: "v1",
      plural: "pipelines",
      namespace: ns,
      body: {
        apiVersion: "tekton.dev/v1",
        kind: "Pipeline",
        metadata: { name: "both" },
        spec: inline.spec.pipelineSpec,
      },
    });
    const { pipelineSpec: _, ...spec } = inline.spec;
    const run = await createRun(cluster, { ...inline, spec: { ...spec, pipelineRef: { name: "both" } } });
    const failed = await waitFor(
      "the run to fail",
      async () => {
        const r = await getRun(cluster, ns, run.metadata.name);
        return r.status?.conditions?.find((c) => c.type === "Succeeded" && c.status === "False");
      },
      { timeoutMs: 120_000 },
    );
    const taskRuns = await cluster.kubectlRun(
      "get",
      "taskruns",
      "-n",
      ns,
      "-o",
      "jsonpath={.items[*].status.conditions[*].message}",
    );
    expect(`${failed.message} ${taskRuns}`).to.contain(
      'mode "workspaces" can keep only one such claim per TaskRun',
    );
  });

  it("keeps a pod's own affinity and adds ours", async () => {
    const { cluster } = await e2e();
    const ns = await createNamespace(cluster, "own-affinity");
    await applyPolicy(cluster, ns, { mode: "pipelineruns" });
    const preferred = {
      weight: 10,
      preference: {
        matchExpressions: [{ key: "topology.kubernetes.io/zone", operator: "In", values: ["zone-b"] }],
      },
    };
    const run = await createRun(
      cluster,
      pipelineRun(ns, {
        tasks: [{ name: "a" }],
        taskRunTemplate: {
          podTemplate: {
            affinity: { nodeAffinity: { preferredDuringSchedulingIgnoredDuringExecution: [preferred] } },
          },
        },
      }),
    );
    await waitRunSucceeded(cluster, ns, run.metadata.name);
    const pod = (await taskPods(cluster, ns, run.metadata.name)).get("a")!;
    expect(pod.spec?.affinity?.nodeAffinity?.preferredDuringSchedulingIgnoredDuringExecution).to.deep.equal([
      preferred,
    ]);
    expect(pod.spec?.affinity?.podAffinity?.requiredDuringSchedulingIgnoredDuringExecution).to.have.length(1);
  });

  it("the pod webhook receives no pod from outside a managed run", async () => {
    const { cluster, controller } = await e2e();
    const ns = await createNamespace(cluster, "unmanaged");
    for (let i = 0; i < 5; i++) {
      await cluster.clients.core.createNamespacedPod({
        namespace: ns,
        body: { metadata: { name: `p${i}` }, spec: { containers: [{ name: "c", image: "pause" }] } },
      });
    }
    const unmanaged = await createRun(cluster, pipelineRun(ns, { tasks: [{ name: "a" }, { name: "b" }] }));
    await waitRunSucceeded(cluster, ns, unmanaged.metadata.name);
    expect(podAdmissions(controller.log, ns)).to.equal(0);
    // Nor those of a run that carries its placement (pipelineruns mode: src/placement/run-placement.ts).
    const carriedNs = await createNamespace(cluster, "carried");
    await applyPolicy(cluster, carriedNs, { mode: "pipelineruns" });
    const carried = await createRun(cluster, pipelineRun(carriedNs, { tasks: [{ name: "a" }] }));
    await waitRunSucceeded(cluster, carriedNs, carried.metadata.name);
    expect(podAdmissions(controller.log, carriedNs)).to.equal(0);
    // Nor those of a workspaces run whose inline pipeline says which claim each task binds.
    const wsNs = await createNamespace(cluster, "carried-ws");
    await applyPolicy(cluster, wsNs, { mode: "workspaces" });
    const ws = await createRun(
      cluster,
      pipelineRun(wsNs, {
        workspaces: { source: RWO_TEMPLATE },
        tasks: [{ name: "a", workspaces: ["source"] }],
      }),
    );
    await waitRunSucceeded(cluster, wsNs, ws.metadata.name);
    expect(podAdmissions(controller.log, wsNs)).to.equal(0);
    // The counter is live: a managed run's pods that need it (nodePinning: the node is known only once
    // the placeholder is placed) do reach it.
    const managedNs = await createNamespace(cluster, "managed");
    await applyPolicy(cluster, managedNs, { mode: "pipelineruns", strategy: "nodePinning" });
    const managed = await createRun(
      cluster,
      pipelineRun(managedNs, {
        workspaces: { source: RWO_TEMPLATE },
        tasks: [{ name: "a", workspaces: ["source"] }],
      }),
    );
    await waitRunSucceeded(cluster, managedNs, managed.metadata.name);
    expect(podAdmissions(controller.log, managedNs)).to.be.at.least(1);
  });
});
