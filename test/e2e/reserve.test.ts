// reserve: LargestTask (Tekton issues #3049 and #8015): a run whose later task is larger than the room left
// on its node. Two small fake nodes of their own (tainted, so no other test's pods land there): node A
// with 1 cpu free (a filler pod holds 3 of its 4), node B with 3 cpu. The run: `small` (100m), then
// `big` (2 cpu).
//  - Without reserve the run lands on A, where `small` fits, and `big` can never start: the test shows it.
//  - With LargestTask, resolved through a Pipeline and Task objects, the run waits (saying why) while
//    only A is usable, then lands on B once B is, and `big` takes the room its reservation held.
//  - A run whose tasks cannot be resolved (a remote resolver) goes on without a reservation, and says so.

import type { V1Pod } from "@kubernetes/client-node";
import { expect } from "chai";
import { RESERVATION_PRIORITY_CLASS } from "../../src/api/constants.js";
import type { PipelineRun } from "../../src/api/types.js";
import type { LocalCluster } from "../cluster/cluster.js";
import { waitFor } from "../cluster/kube.js";
import { POD_DURATION_ANNOTATION } from "../cluster/kwok-stages.js";
import { sleep } from "../cluster/processes.js";
import { e2e, installCrd } from "./env.js";
import {
  applyPolicy,
  createNamespace,
  createRun,
  getPolicy,
  getRun,
  metricSum,
  taskPods,
  uniqueName,
  waitForEvent,
  waitRunSucceeded,
} from "./helpers.js";

const POOL = "reserve-test";
const TOLERATION = { key: POOL, operator: "Exists", effect: "NoSchedule" };

function taskSpec(cpu: string, seconds: number) {
  return {
    metadata: { annotations: { [POD_DURATION_ANNOTATION]: `${seconds}s` } },
    steps: [{ name: "work", image: "busybox", command: ["true"], computeResources: { requests: { cpu } } }],
  };
}

const TASKS = [
  { name: "small", cpu: "100m", seconds: 2 },
  { name: "big", cpu: "2", seconds: 3 },
];

/** The run's podTemplate keeps its pods (and so its placeholder and reservation) on the test's nodes. */
const POD_TEMPLATE = { nodeSelector: { [POOL]: "true" }, tolerations: [TOLERATION] };

function inlineRun(ns: string): PipelineRun {
  return {
    apiVersion: "tekton.dev/v1",
    kind: "PipelineRun",
    metadata: { name: uniqueName("grow"), namespace: ns },
    spec: {
      taskRunTemplate: { podTemplate: POD_TEMPLATE },
      pipelineSpec: {
        tasks: TASKS.map((t, i) => ({
          name: t.name,
          ...(i ? { runAfter: [TASKS[i - 1]!.name] } : {}),
          taskSpec: taskSpec(t.cpu, t.seconds),
        })),
      },
    },
  } as unknown as PipelineRun;
}

/** The same pipeline as Pipeline and Task objects, and a run that references them. */
async function referencedRun(cluster: LocalCluster, ns: string): Promise<PipelineRun> {
  for (const t of TASKS) {
    await cluster.clients.custom.createNamespacedCustomObject({
      group: "tekton.dev",
      version: "v1",
      plural: "tasks",
      namespace: ns,
      body: {
        apiVersion: "tekton.dev/v1",
        kind: "Task",
        metadata: { name: t.name },
        spec: taskSpec(t.cpu, t.seconds),
      },
    });
  }
  await cluster.clients.custom.createNamespacedCustomObject({
    group: "tekton.dev",
    version: "v1",
    plural: "pipelines",
    namespace: ns,
    body: {
      apiVersion: "tekton.dev/v1",
      kind: "Pipeline",
      metadata: { name: "grow" },
      spec: {
        tasks: TASKS.map((t, i) => ({
          name: t.name,
          ...(i ? { runAfter: [TASKS[i - 1]!.name] } : {}),
          taskRef: { name: t.name },
        })),
      },
    },
  });
  return {
    apiVersion: "tekton.dev/v1",
    kind: "PipelineRun",
    metadata: { name: uniqueName("grow"), namespace: ns },
    spec: { taskRunTemplate: { podTemplate: POD_TEMPLATE }, pipelineRef: { name: "grow" } },
  } as unknown as PipelineRun;
}

function unschedulable(pod: V1Pod | undefined): string | undefined {
  const c = pod?.status?.conditions?.find((x) => x.type === "PodScheduled" && x.status === "False");
  return c?.message;
}

describe("reserve: LargestTask", function () {
  this.timeout(300_000);
  let nodeA: string;
  let nodeB: string;
  let filler: string;

  before(async () => {
    const { cluster } = await e2e();
    const shape = {
      labels: { [POOL]: "true" },
      taints: [{ key: POOL, value: "true", effect: "NoSchedule" }],
    };
    nodeA = (await cluster.addNodes(1, { ...shape, cpu: "4", memory: "16Gi" }))[0]!;
    nodeB = (await cluster.addNodes(1, { ...shape, cpu: "3", memory: "16Gi" }))[0]!;
    // B is not usable yet: a run placed now can only go to A.
    await cluster.cordon(nodeB);
    filler = await createNamespace(cluster, "reserve-filler");
    await cluster.clients.core.createNamespacedPod({
      namespace: filler,
      body: {
        metadata: { name: "filler" },
        spec: {
          nodeSelector: { "kubernetes.io/hostname": nodeA },
          tolerations: [TOLERATION],
          containers: [{ name: "filler", image: "pause", resources: { requests: { cpu: "3" } } }],
        },
      },
    });
    await waitFor("the filler pod running on node A", async () => {
      const pod = await cluster.clients.core.readNamespacedPod({ name: "filler", namespace: filler });
      return pod.status?.phase === "Running";
    });
  });

  after(async () => {
    const { cluster } = await e2e();
    await cluster.clients.core.deleteNamespace({ name: filler }).catch(() => undefined);
    for (const n of [nodeA, nodeB]) if (n) await cluster.removeNode(n);
  });

  it("without it, the run lands where its first task fits and its larger task never starts (#3049)", async () => {
    const { cluster } = await e2e();
    const ns = await createNamespace(cluster, "reserve-none");
    await applyPolicy(cluster, ns, { mode: "pipelineruns" });
    const run = await createRun(cluster, inlineRun(ns));
    const big = await waitFor(
      "task big Pending for lack of cpu",
      async () => {
        const pod = (await taskPods(cluster, ns, run.metadata.name)).get("big");
        return unschedulable(pod)?.includes("Insufficient cpu") ? pod : undefined;
      },
      { timeoutMs: 90_000 },
    );
    expect((await taskPods(cluster, ns, run.metadata.name)).get("small")?.spec?.nodeName).to.equal(nodeA);
    // It stays so: its affinity ties it to node A, where the room is not.
    await sleep(5000);
    const still = await cluster.clients.core.readNamespacedPod({ name: big.metadata!.name!, namespace: ns });
    expect(still.spec?.nodeName, "big never scheduled").to.equal(undefined);
    await cluster.clients.core.deleteNamespace({ name: ns });
  });

  it("with it, the run waits visibly for a node with room for its largest task, lands there, and succeeds", async () => {
    const { cluster, controller } = await e2e();
    const ns = await createNamespace(cluster, "reserve-largest");
    await applyPolicy(cluster, ns, { mode: "pipelineruns", reserve: "LargestTask" });
    const before = metricSum(await controller.metrics(), "tekton_affinity_reservations_total");
    const run = await createRun(cluster, await referencedRun(cluster, ns));
    // Only node A is usable, and its free cpu (1) is less than `big` needs (2): the run says so.
    const waiting = await waitForEvent(cluster, ns, run.metadata.name, "Waiting", { type: "Warning" });
    expect(waiting.message)
      .to.contain("no node has room for the run's largest task (big: cpu 2")
      .and.contain("Insufficient cpu");
    expect((await getRun(cluster, ns, run.metadata.name)).spec.status, "still gated").to.equal(
      "PipelineRunPending",
    );

    await cluster.uncordon(nodeB);
    const done = await waitRunSucceeded(cluster, ns, run.metadata.name, 180_000);
    expect(done.metadata.annotations?.["affinity.tekton.dev/placed-on"]).to.equal(nodeB);
    const pods = await taskPods(cluster, ns, run.metadata.name);
    expect([...pods.values()].map((p) => p.spec?.nodeName)).to.deep.equal([nodeB, nodeB]);
    const metrics = await controller.metrics();
    expect(metricSum(metrics, "tekton_affinity_reservations_total") - before).to.equal(1);
    // `big` (2 cpu) only fit on B (3 cpu) by preempting the reservation (2 cpu): the scheduler says so.
    const preempted = (
      await cluster.clients.core.listNamespacedEvent({ namespace: ns, fieldSelector: "reason=Preempted" })
    ).items;
    expect(preempted.map((e) => e.involvedObject.name)).to.satisfy((names: string[]) =>
      names.some((n) => n.endsWith("-room-0")),
    );
  });

  it("reads another namespace's Task only if the run's service account and the cluster resolver's settings allow: otherwise falls back and shows nothing of it", async () => {
    const { cluster } = await e2e();
    const ns = await createNamespace(cluster, "reserve-cross");
    const other = await createNamespace(cluster, "reserve-private");
    await applyPolicy(cluster, ns, { mode: "pipelineruns", reserve: "LargestTask" });
    await cluster.clients.custom.createNamespacedCustomObject({
      group: "tekton.dev",
      version: "v1",
      plural: "tasks",
      namespace: other,
      body: {
        apiVersion: "tekton.dev/v1",
        kind: "Task",
        metadata: { name: "private" },
        spec: taskSpec("3", 1),
      },
    });
    const crossRun = (): PipelineRun =>
      ({
        apiVersion: "tekton.dev/v1",
        kind: "PipelineRun",
        metadata: { name: uniqueName("cross"), namespace: ns },
        spec: {
          pipelineSpec: {
            tasks: [
              {
                name: "borrowed",
                taskRef: {
                  resolver: "cluster",
                  params: [
                    { name: "kind", value: "task" },
                    { name: "name", value: "private" },
                    { name: "namespace", value: other },
                  ],
                },
              },
            ],
          },
        },
      }) as unknown as PipelineRun;
    const refused = await createRun(cluster, crossRun());
    const event = await waitForEvent(cluster, ns, refused.metadata.name, "ReserveUnresolved", {
      type: "Warning",
    });
    expect(event.message)
      .to.contain(`Task ${other}/private is in another namespace`)
      .and.contain("may not get it");
    // Nothing read from it reaches the run's namespace: not its requests.
    expect(event.message).to.not.contain("cpu 3");

    // Once the run's service account may read it, it sizes the reservation.
    await cluster.apply(`
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: task-reader, namespace: ${other}}
rules: [{apiGroups: [tekton.dev], resources: [tasks], verbs: [get]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: task-reader, namespace: ${other}}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: task-reader}
subjects: [{kind: ServiceAccount, name: default, namespace: ${ns}}]
`);
    const allowed = await createRun(cluster, crossRun());
    const reservation = await waitFor("the reservation sized from the other namespace's Task", async () => {
      const sets = await cluster.clients.apps.listNamespacedStatefulSet({
        namespace: ns,
        labelSelector: "app.kubernetes.io/component=affinity-reservation",
      });
      return sets.items.find(
        (s) => s.metadata?.labels?.["affinity.tekton.dev/pipelinerun"] === allowed.metadata.name,
      );
    });
    expect(reservation.metadata?.annotations?.["affinity.tekton.dev/reserved-for"])
      .to.contain("borrowed")
      .and.contain("cpu 3");

    // Nor more than Tekton's cluster resolver may read: its settings block that namespace.
    await cluster.apply(`
apiVersion: v1
kind: Namespace
metadata: {name: tekton-pipelines-resolvers}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: cluster-resolver-config, namespace: tekton-pipelines-resolvers}
data: {blocked-namespaces: "${other}"}
`);
    try {
      const blocked = await createRun(cluster, crossRun());
      const why = await waitForEvent(cluster, ns, blocked.metadata.name, "ReserveUnresolved", {
        type: "Warning",
      });
      expect(why.message)
        .to.contain(`the cluster resolver's blocked-namespaces lists ${other}`)
        .and.contain("ConfigMap tekton-pipelines-resolvers/cluster-resolver-config")
        .and.not.contain("cpu 3");
    } finally {
      await cluster.clients.core.deleteNamespacedConfigMap({
        name: "cluster-resolver-config",
        namespace: "tekton-pipelines-resolvers",
      });
    }
    await cluster.clients.core.deleteNamespace({ name: ns });
    await cluster.clients.core.deleteNamespace({ name: other });
  });

  it("a policy says Ready=False while the reservations' PriorityClass is missing, and True once it is there", async () => {
    const { cluster } = await e2e();
    const ns = await createNamespace(cluster, "reserve-class");
    const ready = async () =>
      (await getPolicy(cluster, ns, "default")).status?.conditions?.find((c) => c.type === "Ready");
    // Installed by deploy/ and release.yaml; a controller started from the README's steps alone lacks it.
    await cluster.kubectlRun("delete", "priorityclass", RESERVATION_PRIORITY_CLASS);
    try {
      await applyPolicy(cluster, ns, { mode: "pipelineruns", reserve: "LargestTask" }, "default", undefined, {
        waitObserved: false,
      });
      const missing = await waitFor("Ready=False naming the class", async () => {
        const c = await ready();
        return c?.reason === "ReservationPriorityClassNotFound" ? c : undefined;
      });
      expect(missing.status).to.equal("False");
      expect(missing.message).to.contain(`PriorityClass ${RESERVATION_PRIORITY_CLASS} does not exist`);
    } finally {
      await installCrd(cluster);
    }
    // Seen within the lookup's 10 s memory and the next resync.
    await waitFor("Ready=True once the class exists", async () => (await ready())?.status === "True", {
      timeoutMs: 60_000,
    });
  });

  it("tasks that cannot be resolved: the run goes on without a reservation and says so", async () => {
    const { cluster } = await e2e();
    const ns = await createNamespace(cluster, "reserve-remote");
    await applyPolicy(cluster, ns, { mode: "pipelineruns", reserve: "LargestTask" });
    const remote = {
      apiVersion: "tekton.dev/v1",
      kind: "PipelineRun",
      metadata: { name: uniqueName("remote"), namespace: ns },
      spec: {
        pipelineRef: {
          resolver: "git",
          params: [
            { name: "url", value: "https://example.com/pipelines.git" },
            { name: "pathInRepo", value: "p.yaml" },
          ],
        },
      },
    } as unknown as PipelineRun;
    const run = await createRun(cluster, remote);
    const event = await waitForEvent(cluster, ns, run.metadata.name, "ReserveUnresolved", {
      type: "Warning",
    });
    expect(event.message).to.contain("git").and.contain("falls back to None");
    await waitFor("the run released", async () => {
      const r = await getRun(cluster, ns, run.metadata.name);
      return r.metadata.annotations?.["affinity.tekton.dev/placed-on"] ? r : undefined;
    });
    await cluster.clients.core.deleteNamespace({ name: ns });
  });
});
