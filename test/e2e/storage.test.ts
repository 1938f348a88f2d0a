// Real volume semantics (docs/local-cluster.md): a ReadWriteOnce volume attaches to one node at a time,
// a local volume lives on one node, a zonal one in one zone. The seed's scenarios on that storage:
//  - the failure co-scheduling prevents, shown on a run without a policy, and caught by the volume
//    invariant every e2e test is checked against (volume-invariants.ts), so the checker can fail;
//  - two tasks sharing a ReadWriteOnce volumeClaimTemplate, in every mode, on `local-wffc`,
//    `zonal-wffc` and `zonal` storage;
//  - the cordon walkthrough: a local volume keeps the run on its node (CannotMigrate), a zonal one
//    lets the placeholder move within the volume's zone.

import {
  PatchStrategy,
  setHeaderOptions,
  type V1Node,
  type V1PersistentVolume,
  type V1Pod,
} from "@kubernetes/client-node";
import { expect } from "chai";
import type { AffinityPolicySpec, Mode, PipelineRun } from "../../src/api/types.js";
import { type LocalCluster, ZONE_LABEL } from "../cluster/cluster.js";
import { waitFor } from "../cluster/kube.js";
import { ATTACHED_ANNOTATION } from "../cluster/storage/model.js";
import { e2e } from "./env.js";
import {
  applyPolicy,
  createNamespace,
  createRun,
  pipelineRun,
  placeholderPods,
  runEvents,
  taskPods,
  waitForEvent,
  waitRunSucceeded,
} from "./helpers.js";

const HOSTNAME = "kubernetes.io/hostname";

function template(storageClassName: string) {
  return {
    volumeClaimTemplate: {
      spec: {
        storageClassName,
        accessModes: ["ReadWriteOnce"],
        resources: { requests: { storage: "10Mi" } },
      },
    },
  };
}

/** Two tasks, one after the other, sharing one ReadWriteOnce volume (the seed's first scenario). */
function twoTaskRun(ns: string, storageClassName: string, firstSeconds = 2): PipelineRun {
  return pipelineRun(ns, {
    workspaces: { source: template(storageClassName) },
    tasks: [
      { name: "first-task", seconds: firstSeconds, workspaces: ["source"] },
      { name: "last-task", seconds: 1, runAfter: ["first-task"], workspaces: ["source"] },
    ],
  });
}

async function schedulableNodes(cluster: LocalCluster): Promise<V1Node[]> {
  return (await cluster.listNodes()).filter(
    (n) =>
      !n.spec?.unschedulable &&
      !n.spec?.taints?.length &&
      n.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True"),
  );
}

/** The PersistentVolume bound to the run's only claim, read as soon as the claim is bound. Start it while
 * the run runs: pipelineruns and isolate-pipelinerun modes delete the claim when the run finishes (gone at
 * once, its protection finalizer purged), and the provisioner then deletes the volume. */
function runVolume(cluster: LocalCluster, ns: string): Promise<V1PersistentVolume> {
  const volume = readRunVolume(cluster, ns);
  // Awaited later, if at all: a test that fails before then must not leave a rejection unhandled.
  volume.catch(() => undefined);
  return volume;
}

async function readRunVolume(cluster: LocalCluster, ns: string): Promise<V1PersistentVolume> {
  const volumeName = await waitFor(
    `the run's claim in ${ns} bound`,
    async () => {
      const claims = (await cluster.clients.core.listNamespacedPersistentVolumeClaim({ namespace: ns }))
        .items;
      expect(claims.length, "the run's claims").to.be.at.most(1);
      return claims[0]?.spec?.volumeName;
    },
    { intervalMs: 100 },
  );
  return cluster.clients.core.readPersistentVolume({ name: volumeName });
}

function volumeRequirement(pv: V1PersistentVolume, key: string): string | undefined {
  const terms = pv.spec?.nodeAffinity?.required?.nodeSelectorTerms ?? [];
  return terms.flatMap((t) => t.matchExpressions ?? []).find((e) => e.key === key)?.values?.[0];
}

/** Asserts the volume sits where the pods ran: on their node (local) or in their zone (zonal). */
function expectVolumeWhereTasksRan(pv: V1PersistentVolume, pods: V1Pod[], zoneOf: Map<string, string>) {
  const nodes = new Set(pods.map((p) => p.spec?.nodeName ?? ""));
  const onNode = volumeRequirement(pv, HOSTNAME);
  if (onNode) expect([...nodes], "every task on the local volume's node").to.deep.equal([onNode]);
  const inZone = volumeRequirement(pv, ZONE_LABEL);
  if (inZone) {
    for (const n of nodes) expect(zoneOf.get(n), `node ${n} in the volume's zone`).to.equal(inZone);
  }
  expect(onNode ?? inZone, `PersistentVolume ${pv.metadata?.name} is tied to a node or zone`).to.be.a(
    "string",
  );
}

async function firstTaskRunning(cluster: LocalCluster, ns: string, run: PipelineRun): Promise<V1Pod> {
  return waitFor("first-task running", async () => {
    const pod = (await taskPods(cluster, ns, run.metadata.name)).get("first-task");
    return pod?.status?.phase === "Running" ? pod : undefined;
  });
}

async function zonesOf(cluster: LocalCluster): Promise<Map<string, string>> {
  return new Map(
    (await cluster.listNodes()).map((n) => [n.metadata?.name ?? "", n.metadata?.labels?.[ZONE_LABEL] ?? ""]),
  );
}

describe("storage: real volume semantics", function () {
  this.timeout(300_000);

  it("without a policy, a ReadWriteOnce volume split over two nodes leaves a task stuck on Multi-Attach, and the checker catches it", async () => {
    const { cluster, volumes } = await e2e();
    const started = Date.now();
    const ns = await createNamespace(cluster, "no-policy");
    volumes.provokedIn(ns);
    const [nodeA, nodeB] = (await schedulableNodes(cluster)).map((n) => n.metadata!.name!);
    // Two tasks at once on one volume, on two nodes (as the scheduler may well place them).
    const run = pipelineRun(ns, {
      workspaces: { source: template("standard") },
      tasks: ["a", "b"].map((name) => ({ name, seconds: 40, workspaces: ["source"] })),
    });
    run.spec.taskRunSpecs = [
      { pipelineTaskName: "a", podTemplate: { nodeSelector: { [HOSTNAME]: nodeA! } } },
      { pipelineTaskName: "b", podTemplate: { nodeSelector: { [HOSTNAME]: nodeB! } } },
    ] as never;
    await createRun(cluster, run);

    // One task runs; the other waits on the volume, as the attach/detach controller says.
    const blocked = await waitFor(
      "one task running and the other waiting on a Multi-Attach",
      async () => {
        const pods = [...(await taskPods(cluster, ns, run.metadata.name)).values()];
        const events = (
          await cluster.clients.core.listNamespacedEvent({
            namespace: ns,
            fieldSelector: "reason=FailedAttachVolume",
          })
        ).items;
        const running = pods.filter((p) => p.status?.phase === "Running");
        const waiting = pods.find(
          (p) =>
            p.status?.phase === "Pending" &&
            events.some(
              (e) => e.involvedObject.uid === p.metadata?.uid && e.message?.includes("Multi-Attach"),
            ),
        );
        return running.length === 1 && waiting ? waiting : undefined;
      },
      { timeoutMs: 60_000 },
    );

    // Part 2 of the invariant: the task stays stuck on attach.
    const stuck = await waitFor(
      "the checker to report the stuck task",
      async () => volumes.violations(started, [ns]).find((v) => v.kind === "StuckOnAttach"),
      { timeoutMs: 40_000 },
    );
    expect(stuck.message).to.contain(blocked.metadata!.name!).and.contain("Multi-Attach");

    // Part 1: force the attach (as a careless force-detach would), and both run on two nodes at once.
    await cluster.clients.core.patchNamespacedPod(
      {
        name: blocked.metadata!.name!,
        namespace: ns,
        body: { metadata: { annotations: { [ATTACHED_ANNOTATION]: blocked.spec!.nodeName! } } },
      },
      setHeaderOptions("Content-Type", PatchStrategy.MergePatch),
    );
    const twoNodes = await waitFor(
      "the checker to report the volume in use on two nodes",
      async () => volumes.violations(started, [ns]).find((v) => v.kind === "TwoNodes"),
      { timeoutMs: 30_000 },
    );
    expect(twoNodes.message).to.contain(nodeA!).and.contain(nodeB!);
    await cluster.clients.core.deleteNamespace({ name: ns });
  });

  for (const storageClass of ["local-wffc", "zonal-wffc", "zonal"]) {
    it(`two tasks sharing a ReadWriteOnce volumeClaimTemplate on ${storageClass} storage succeed in every mode, where the volume is`, async () => {
      const { cluster } = await e2e();
      const modes: Mode[] = ["workspaces", "pipelineruns", "isolate-pipelinerun", "disabled"];
      const started = await Promise.all(
        modes.map(async (mode) => {
          const ns = await createNamespace(cluster, `st-${mode.slice(0, 8)}`);
          const spec: AffinityPolicySpec =
            mode === "isolate-pipelinerun" ? { mode, isolation: { scope: "namespace" } } : { mode };
          await applyPolicy(cluster, ns, spec);
          const run = await createRun(cluster, twoTaskRun(ns, storageClass));
          return { mode, ns, run, volume: runVolume(cluster, ns) };
        }),
      );
      const zoneOf = await zonesOf(cluster);
      for (const { mode, ns, run, volume } of started) {
        await waitRunSucceeded(cluster, ns, run.metadata.name, 120_000);
        const pods = [...(await taskPods(cluster, ns, run.metadata.name)).values()];
        expect(pods, `${mode}: task pods`).to.have.length(2);
        if (mode !== "disabled") {
          const nodes = new Set(pods.map((p) => p.spec?.nodeName));
          expect(nodes.size, `${mode}: both tasks on one node`).to.equal(1);
        }
        expectVolumeWhereTasksRan(await volume, pods, zoneOf);
      }
    });
  }

  it("cordon walkthrough on local storage: the placeholder cannot leave its volume's node and says so; the run finishes once it is uncordoned", async () => {
    const { cluster } = await e2e();
    const ns = await createNamespace(cluster, "st-cordon-local");
    await applyPolicy(cluster, ns, { mode: "pipelineruns" });
    const run = await createRun(cluster, twoTaskRun(ns, "local-wffc", 12));
    const node = (await firstTaskRunning(cluster, ns, run)).spec!.nodeName!;
    await cluster.cordon(node);
    try {
      const event = await waitForEvent(cluster, ns, run.metadata.name, "CannotMigrate", { type: "Warning" });
      expect(event.message).to.contain(`node ${node} is cordoned`).and.contain(`bound to node ${node}`);
      const [placeholder] = await placeholderPods(cluster, ns, run.metadata.uid!);
      expect(placeholder?.spec?.nodeName, "the placeholder stayed").to.equal(node);
    } finally {
      await cluster.uncordon(node);
    }
    await waitRunSucceeded(cluster, ns, run.metadata.name, 120_000);
    const pods = [...(await taskPods(cluster, ns, run.metadata.name)).values()];
    expect(pods.map((p) => p.spec?.nodeName)).to.deep.equal([node, node]);
  });

  describe("cordon walkthroughs on zonal storage", () => {
    // Two schedulable nodes in every zone, so a run has somewhere to go in its volume's zone.
    let added: string[] = [];
    before(async () => {
      const { cluster } = await e2e();
      const perZone = new Map<string, number>();
      for (const n of await schedulableNodes(cluster)) {
        const zone = n.metadata?.labels?.[ZONE_LABEL] ?? "";
        perZone.set(zone, (perZone.get(zone) ?? 0) + 1);
      }
      if (cluster.zones.some((z) => (perZone.get(z) ?? 0) < 2))
        added = await cluster.addNodes(cluster.zones.length);
    });
    after(async () => {
      const { cluster } = await e2e();
      for (const n of added) await cluster.removeNode(n);
    });

    it("sharing a node: the placeholder moves to another node of the volume's zone, and the next task follows it", async () => {
      const { cluster } = await e2e();
      const ns = await createNamespace(cluster, "st-cordon-zonal");
      await applyPolicy(cluster, ns, { mode: "workspaces" });
      const run = await createRun(cluster, twoTaskRun(ns, "zonal-wffc", 12));
      const node = (await firstTaskRunning(cluster, ns, run)).spec!.nodeName!;
      await cluster.cordon(node);
      try {
        const migrated = await waitForEvent(cluster, ns, run.metadata.name, "Migrated", {
          timeoutMs: 60_000,
        });
        expect(migrated.message).to.contain(`from node ${node} to node `);
        await waitRunSucceeded(cluster, ns, run.metadata.name, 120_000);
      } finally {
        await cluster.uncordon(node);
      }
      const pods = await taskPods(cluster, ns, run.metadata.name);
      const zoneOf = await zonesOf(cluster);
      const last = pods.get("last-task")!.spec!.nodeName!;
      expect(last, "the next task followed the placeholder off the cordoned node").to.not.equal(node);
      const pv = await runVolume(cluster, ns);
      expect(zoneOf.get(last), "in the volume's zone").to.equal(volumeRequirement(pv, ZONE_LABEL));
      expect(zoneOf.get(node)).to.equal(zoneOf.get(last));
    });

    it("sharing a zone: a cordoned node does not move the placeholder while its zone has room; the next task uses another node of the zone", async () => {
      const { cluster } = await e2e();
      const ns = await createNamespace(cluster, "st-cordon-zone");
      await applyPolicy(cluster, ns, { mode: "pipelineruns", topologyKey: ZONE_LABEL });
      const run = await createRun(cluster, twoTaskRun(ns, "zonal-wffc", 12));
      const volume = runVolume(cluster, ns);
      await firstTaskRunning(cluster, ns, run);
      const [placeholder] = await placeholderPods(cluster, ns, run.metadata.uid!);
      const node = placeholder!.spec!.nodeName!;
      await cluster.cordon(node);
      try {
        await waitRunSucceeded(cluster, ns, run.metadata.name, 120_000);
      } finally {
        await cluster.uncordon(node);
      }
      const reasons = (await runEvents(cluster, ns, run.metadata.name)).map((e) => e.reason);
      expect(reasons, "no move while the zone had room").to.not.include("Migrating");
      const pods = await taskPods(cluster, ns, run.metadata.name);
      const zoneOf = await zonesOf(cluster);
      const pv = await volume;
      for (const [task, pod] of pods) {
        expect(zoneOf.get(pod.spec!.nodeName!), `${task} in the volume's zone`).to.equal(
          volumeRequirement(pv, ZONE_LABEL),
        );
      }
      expect(zoneOf.get(node), "the placeholder's zone").to.equal(volumeRequirement(pv, ZONE_LABEL));
      expect(pods.get("last-task")!.spec!.nodeName, "not on the cordoned node").to.not.equal(node);
    });
  });
});
