// Acceptance scenario 4: what the placeholder inherits (service account, nodeSelector, tolerations)
// and the PVC cleanup matrix; plus cleanup through owner references when a run is deleted.

import { expect } from "chai";
import type { AffinityPolicySpec, PipelineRun } from "../../src/api/types.js";
import { tektonClaimName } from "../../src/placement/names.js";
import type { LocalCluster } from "../cluster/cluster.js";
import { isNotFound, waitFor } from "../cluster/kube.js";
import { e2e } from "./env.js";
import {
  applyPolicy,
  createNamespace,
  createRun,
  pipelineRun,
  placeholderPods,
  type RunShape,
  RWO_TEMPLATE,
  runEvents,
  taskPods,
  waitForEvent,
  waitRunSucceeded,
} from "./helpers.js";

async function createServiceAccount(cluster: LocalCluster, namespace: string, name: string) {
  await cluster.clients.core.createNamespacedServiceAccount({ namespace, body: { metadata: { name } } });
}

/** Creates a run and returns its placeholder pod once it exists. */
async function placeholderFor(cluster: LocalCluster, ns: string, shape: RunShape) {
  const run = await createRun(cluster, pipelineRun(ns, shape));
  const pod = await waitFor(
    `placeholder of ${run.metadata.name}`,
    async () => (await placeholderPods(cluster, ns, run.metadata.uid!))[0],
  );
  return { run, pod };
}

/** Whether the claim object is there at all: one stuck Terminating (deleted, but held by its
 * protection finalizer) still is, and still holds its volume. */
async function claimExists(cluster: LocalCluster, ns: string, name: string): Promise<boolean> {
  try {
    await cluster.clients.core.readNamespacedPersistentVolumeClaim({ name, namespace: ns });
    return true;
  } catch (err) {
    if (isNotFound(err)) return false;
    throw err;
  }
}

const templateClaim = (run: PipelineRun) => tektonClaimName(undefined, "source", run.metadata.uid!);

describe("placeholder inheritance and cleanup (scenario 4)", function () {
  this.timeout(180_000);

  it("service account: the policy's, else the run's taskRunTemplate, else the namespace default", async () => {
    const { cluster } = await e2e();
    const plain = await createNamespace(cluster, "sa");
    await createServiceAccount(cluster, plain, "builder");
    await applyPolicy(cluster, plain, { mode: "pipelineruns" });
    const inherited = await placeholderFor(cluster, plain, {
      tasks: [{ name: "a" }],
      taskRunTemplate: { serviceAccountName: "builder" },
    });
    expect(inherited.pod.spec?.serviceAccountName).to.equal("builder");
    const defaulted = await placeholderFor(cluster, plain, { tasks: [{ name: "a" }] });
    expect(defaulted.pod.spec?.serviceAccountName).to.equal("default");

    const overriding = await createNamespace(cluster, "sa-override");
    await createServiceAccount(cluster, overriding, "builder");
    await createServiceAccount(cluster, overriding, "placeholder");
    await applyPolicy(cluster, overriding, {
      mode: "pipelineruns",
      placeholder: { serviceAccountName: "placeholder" },
    });
    const overridden = await placeholderFor(cluster, overriding, {
      tasks: [{ name: "a" }],
      taskRunTemplate: { serviceAccountName: "builder" },
    });
    expect(overridden.pod.spec?.serviceAccountName).to.equal("placeholder");
    for (const [ns, r] of [
      [plain, inherited.run],
      [plain, defaulted.run],
      [overriding, overridden.run],
    ] as const) {
      await waitRunSucceeded(cluster, ns, r.metadata.name);
    }
  });

  it("nodeSelector: the run's pod template wins over the policy's, and the run lands there", async () => {
    const { cluster } = await e2e();
    const ns = await createNamespace(cluster, "selector");
    const spec: AffinityPolicySpec = {
      mode: "pipelineruns",
      placeholder: { nodeSelector: { "topology.kubernetes.io/zone": "zone-a" } },
    };
    await applyPolicy(cluster, ns, spec);
    const policyOnly = await placeholderFor(cluster, ns, { tasks: [{ name: "a" }] });
    expect(policyOnly.pod.spec?.nodeSelector).to.deep.equal({ "topology.kubernetes.io/zone": "zone-a" });
    const target = "kwok-node-1";
    const { run, pod } = await placeholderFor(cluster, ns, {
      tasks: [{ name: "a" }],
      taskRunTemplate: { podTemplate: { nodeSelector: { "kubernetes.io/hostname": target } } },
    });
    expect(pod.spec?.nodeSelector).to.deep.equal({ "kubernetes.io/hostname": target });
    const done = await waitRunSucceeded(cluster, ns, run.metadata.name);
    expect(done.metadata.annotations?.["affinity.tekton.dev/placed-on"]).to.equal(target);
    await waitRunSucceeded(cluster, ns, policyOnly.run.metadata.name);
  });

  it("Windows: a run for Windows nodes gets a placeholder the apiserver accepts as a Windows pod, and lands there", async () => {
    const { cluster } = await e2e();
    const ns = await createNamespace(cluster, "windows");
    await applyPolicy(cluster, ns, { mode: "pipelineruns" });
    const [node] = await cluster.addNodes(1, { labels: { "kubernetes.io/os": "windows" } });
    try {
      // The placeholder pod exists at all only if the apiserver took it: with os.name windows it refuses
      // every Linux-only field (seccomp, capabilities, uid, readOnlyRootFilesystem, ...).
      const { run, pod } = await placeholderFor(cluster, ns, {
        tasks: [{ name: "a" }],
        taskRunTemplate: { podTemplate: { nodeSelector: { "kubernetes.io/os": "windows" } } },
      });
      expect(pod.spec?.os?.name).to.equal("windows");
      expect(pod.spec?.securityContext).to.deep.equal({
        runAsNonRoot: true,
        windowsOptions: { runAsUserName: "ContainerUser" },
      });
      expect(pod.spec?.containers[0]?.securityContext).to.equal(undefined);
      const done = await waitRunSucceeded(cluster, ns, run.metadata.name);
      expect(done.metadata.annotations?.["affinity.tekton.dev/placed-on"]).to.equal(node);
    } finally {
      await cluster.removeNode(node!);
    }
  });

  it("affinity and labels: the run's whole pod affinity and its labels reach the placeholder, as in Tekton", async () => {
    const { cluster } = await e2e();
    const ns = await createNamespace(cluster, "inherit");
    await applyPolicy(cluster, ns, { mode: "pipelineruns" });
    const target = "kwok-node-2";
    // Pods the run wants to stay away from on every other node, and a run already on the target: the
    // placeholder's own spreading then prefers another node, so only the inherited anti-affinity brings
    // it there.
    for (const node of ["kwok-node-0", "kwok-node-1"]) {
      await cluster.clients.core.createNamespacedPod({
        namespace: ns,
        body: {
          metadata: { name: `noisy-${node}`, labels: { app: "noisy" } },
          spec: { nodeName: node, containers: [{ name: "c", image: "busybox" }] },
        },
      });
    }
    const first = await placeholderFor(cluster, ns, {
      tasks: [{ name: "a", seconds: 12 }],
      taskRunTemplate: { podTemplate: { nodeSelector: { "kubernetes.io/hostname": target } } },
    });
    await waitFor(
      "the first placeholder on its node",
      async () => (await placeholderPods(cluster, ns, first.run.metadata.uid!))[0]?.spec?.nodeName === target,
    );
    const away = {
      labelSelector: { matchLabels: { app: "noisy" } },
      topologyKey: "kubernetes.io/hostname",
    };
    const { run } = await placeholderFor(cluster, ns, {
      labels: { team: "payments" },
      tasks: [{ name: "a" }, { name: "b", runAfter: ["a"] }],
      taskRunTemplate: {
        podTemplate: {
          affinity: { podAntiAffinity: { requiredDuringSchedulingIgnoredDuringExecution: [away] } },
        },
      },
    });
    const pod = await waitFor("the placeholder scheduled", async () => {
      const p = (await placeholderPods(cluster, ns, run.metadata.uid!))[0];
      return p?.spec?.nodeName ? p : undefined;
    });
    expect(pod.spec?.affinity?.podAntiAffinity?.requiredDuringSchedulingIgnoredDuringExecution).to.deep.equal(
      [away],
    );
    expect(pod.spec?.nodeName).to.equal(target);
    const sets = await cluster.clients.apps.listNamespacedStatefulSet({
      namespace: ns,
      labelSelector: `affinity.tekton.dev/pipelinerun-uid=${run.metadata.uid}`,
    });
    for (const labels of [pod.metadata?.labels, sets.items[0]?.metadata?.labels]) {
      expect(labels?.team).to.equal("payments");
      expect(labels?.["tekton.dev/pipelineRun"]).to.equal(run.metadata.name);
      expect(labels).to.not.have.property("affinity.tekton.dev/managed");
    }
    const done = await waitRunSucceeded(cluster, ns, run.metadata.name);
    expect(done.metadata.annotations?.["affinity.tekton.dev/placed-on"]).to.equal(target);
    await waitRunSucceeded(cluster, ns, first.run.metadata.name);
  });

  it("a run's own required pod affinity: its placeholder goes beside the target, and its tasks follow", async () => {
    const { cluster } = await e2e();
    const ns = await createNamespace(cluster, "beside");
    await applyPolicy(cluster, ns, { mode: "pipelineruns" });
    const target = "kwok-node-1";
    await cluster.clients.core.createNamespacedPod({
      namespace: ns,
      body: {
        metadata: { name: "cache", labels: { app: "cache" } },
        spec: { nodeName: target, containers: [{ name: "c", image: "busybox" }] },
      },
    });
    const beside = {
      labelSelector: { matchLabels: { app: "cache" } },
      topologyKey: "kubernetes.io/hostname",
    };
    // The scheduler needs one pod to match every required pod affinity term: a task pod with the run's
    // term and ours beside it would never be scheduled (as with Tekton's assistant, which appends its own).
    const run = await createRun(
      cluster,
      pipelineRun(ns, {
        tasks: [{ name: "a" }, { name: "b", runAfter: ["a"] }],
        taskRunTemplate: {
          podTemplate: {
            affinity: { podAffinity: { requiredDuringSchedulingIgnoredDuringExecution: [beside] } },
          },
        },
      }),
    );
    const done = await waitRunSucceeded(cluster, ns, run.metadata.name, 60_000);
    expect(done.metadata.annotations?.["affinity.tekton.dev/placed-on"]).to.equal(target);
    for (const pod of (await taskPods(cluster, ns, run.metadata.name)).values())
      expect(pod.spec?.nodeName).to.equal(target);
  });

  it('PVC cleanup matrix: workspaces mode keeps template PVCs unless auto-cleanup-pvc is exactly "true"; other modes delete them; user PVCs stay', async () => {
    const { cluster } = await e2e();
    const wsNs = await createNamespace(cluster, "pvc-ws");
    await applyPolicy(cluster, wsNs, { mode: "workspaces" });
    const runsNs = await createNamespace(cluster, "pvc-runs");
    await applyPolicy(cluster, runsNs, { mode: "pipelineruns" });
    await cluster.clients.core.createNamespacedPersistentVolumeClaim({
      namespace: runsNs,
      body: {
        metadata: { name: "users-own" },
        spec: { accessModes: ["ReadWriteOnce"], resources: { requests: { storage: "10Mi" } } },
      },
    });
    const shape = (annotations?: Record<string, string>): RunShape => ({
      annotations,
      workspaces: { source: RWO_TEMPLATE },
      tasks: [{ name: "a", workspaces: ["source"] }],
    });
    const cases = [
      { ns: wsNs, shape: shape(), deleted: false },
      { ns: wsNs, shape: shape({ "tekton.dev/auto-cleanup-pvc": "true" }), deleted: true },
      { ns: wsNs, shape: shape({ "tekton.dev/auto-cleanup-pvc": "True" }), deleted: false },
      { ns: wsNs, shape: shape({ "tekton.dev/auto-cleanup-pvc": "yes" }), deleted: false },
      { ns: runsNs, shape: shape(), deleted: true },
    ];
    const runs = [];
    for (const c of cases) runs.push({ ...c, run: await createRun(cluster, pipelineRun(c.ns, c.shape)) });
    const userRun = await createRun(
      cluster,
      pipelineRun(runsNs, {
        workspaces: { source: { persistentVolumeClaim: { claimName: "users-own" } } },
        tasks: [{ name: "a", workspaces: ["source"] }],
      }),
    );
    for (const r of [...runs.map((x) => ({ ns: x.ns, run: x.run })), { ns: runsNs, run: userRun }]) {
      await waitRunSucceeded(cluster, r.ns, r.run.metadata.name);
      await waitForEvent(cluster, r.ns, r.run.metadata.name, "CleanedUp");
    }
    for (const r of runs) {
      const name = templateClaim(r.run);
      expect(
        await claimExists(cluster, r.ns, name),
        `${r.ns} ${JSON.stringify(r.shape.annotations ?? {})} claim ${name}`,
      ).to.equal(!r.deleted);
    }
    expect(await claimExists(cluster, runsNs, "users-own")).to.equal(true);
  });

  it("deleting a waiting run removes its placeholder and claim through owner references", async () => {
    const { cluster } = await e2e();
    const ns = await createNamespace(cluster, "gc");
    await applyPolicy(cluster, ns, {
      mode: "workspaces",
      placeholder: { nodeSelector: { "no-such-label": "anywhere" } },
    });
    const run = await createRun(
      cluster,
      pipelineRun(ns, {
        workspaces: { source: RWO_TEMPLATE },
        tasks: [{ name: "a", workspaces: ["source"] }],
      }),
    );
    // The run may first wait for its placeholder's pod to exist (a slow StatefulSet controller); the
    // scheduler's reason follows as its own Waiting event.
    const waiting = await waitFor("a Waiting event with the scheduler's reason", async () =>
      (await runEvents(cluster, ns, run.metadata.name)).find(
        (e) =>
          e.reason === "Waiting" && e.type === "Warning" && e.message?.includes("node affinity/selector"),
      ),
    );
    expect(waiting.message).to.contain("didn't match Pod's node affinity/selector");
    expect(await claimExists(cluster, ns, templateClaim(run))).to.equal(true);
    await cluster.clients.custom.deleteNamespacedCustomObject({
      group: "tekton.dev",
      version: "v1",
      plural: "pipelineruns",
      namespace: ns,
      name: run.metadata.name,
    });
    await waitFor("placeholder and claim garbage-collected", async () => {
      const sets = await cluster.clients.apps.listNamespacedStatefulSet({ namespace: ns });
      return sets.items.length === 0 && !(await claimExists(cluster, ns, templateClaim(run)));
    });
  });
});
