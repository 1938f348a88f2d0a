// Acceptance scenarios 2-5 of DESIGN.md on the real control plane with the real Tekton controller.

import { expect } from "chai";
import {
  GATED_ANNOTATION,
  GATED_AT_ANNOTATION,
  MANAGED_LABEL,
  PENDING_STATUS,
  PLACEMENT_LABEL,
  SHARED_CLAIMS_ANNOTATION,
  WAITING_ANNOTATION,
} from "../../src/api/constants.js";
import type { PipelineRun } from "../../src/api/types.js";
import { tektonClaimName } from "../../src/placement/names.js";
import { placementValue } from "../../src/placement/run-placement.js";
import type { LocalCluster } from "../cluster/cluster.js";
import { waitFor } from "../cluster/kube.js";
import { e2e } from "./env.js";
import {
  applyPolicy,
  asTenant,
  createNamespace,
  createRun,
  getRun,
  pipelineRun,
  placeholderPods,
  RWO_TEMPLATE,
  runEvents,
  taskPods,
  waitForEvent,
  waitRunSucceeded,
} from "./helpers.js";

const FOUR_TASKS = [
  { name: "say-hello" },
  { name: "say-world" },
  { name: "say-hello-again", runAfter: ["say-hello"] },
  { name: "say-world-again", runAfter: ["say-world"] },
];

function placedOnOf(run: PipelineRun): string | undefined {
  return run.metadata.annotations?.["affinity.tekton.dev/placed-on"];
}

async function waitReleased(cluster: LocalCluster, ns: string, name: string): Promise<void> {
  await waitFor(
    `${ns}/${name} released from the gate`,
    async () => (await getRun(cluster, ns, name)).spec.status === undefined,
  );
}

async function nodesOf(cluster: LocalCluster, ns: string, run: string) {
  const pods = await taskPods(cluster, ns, run);
  return new Set([...pods.values()].map((p) => p.spec?.nodeName));
}

describe("co-scheduling", function () {
  this.timeout(240_000);

  it("pipelineruns mode: all four task pods run on the placeholder's node (scenario 2)", async () => {
    const { cluster } = await e2e();
    const ns = await createNamespace(cluster, "four-tasks");
    await applyPolicy(cluster, ns, { mode: "pipelineruns" });
    // Several runs, so that landing on one node by chance is very unlikely across all of them.
    const runs = await Promise.all(
      [1, 2, 3].map(() => createRun(cluster, pipelineRun(ns, { tasks: FOUR_TASKS }))),
    );
    for (const run of runs) {
      const done = await waitRunSucceeded(cluster, ns, run.metadata.name);
      const nodes = await nodesOf(cluster, ns, run.metadata.name);
      expect(nodes.size, `task pods of ${run.metadata.name} on ${[...nodes]}`).to.equal(1);
      const placed = done.metadata.annotations?.["affinity.tekton.dev/placed-on"];
      expect([...nodes][0]).to.equal(placed);
      const pods = await taskPods(cluster, ns, run.metadata.name);
      expect(pods.size).to.equal(4);
      for (const pod of pods.values()) {
        const terms = pod.spec?.affinity?.podAffinity?.requiredDuringSchedulingIgnoredDuringExecution ?? [];
        expect(terms).to.have.length(1);
      }
    }
  });

  it("pipelineruns mode: the placeholder mounts the run's claims, user PVC and template, as Tekton's does", async () => {
    const { cluster } = await e2e();
    const ns = await createNamespace(cluster, "runs-claims");
    await applyPolicy(cluster, ns, { mode: "pipelineruns" });
    await cluster.clients.core.createNamespacedPersistentVolumeClaim({
      namespace: ns,
      body: {
        metadata: { name: "team-cache" },
        spec: { accessModes: ["ReadWriteOnce"], resources: { requests: { storage: "10Mi" } } },
      },
    });
    const run = await createRun(
      cluster,
      pipelineRun(ns, {
        workspaces: { source: RWO_TEMPLATE, cache: { persistentVolumeClaim: { claimName: "team-cache" } } },
        tasks: [
          { name: "fetch", workspaces: ["source", "cache"] },
          { name: "build", runAfter: ["fetch"], workspaces: ["source"] },
        ],
      }),
    );
    const [placeholder] = await waitFor("the run's placeholder", async () => {
      const pods = await placeholderPods(cluster, ns, run.metadata.uid!);
      return pods.length ? pods : undefined;
    });
    const mounted = (placeholder!.spec?.volumes ?? []).flatMap(
      (v) => v.persistentVolumeClaim?.claimName ?? [],
    );
    expect(mounted).to.have.length(2);
    expect(mounted).to.include("team-cache");
    const templated = mounted.find((c) => c !== "team-cache")!;
    await waitRunSucceeded(cluster, ns, run.metadata.name);
    const pods = await taskPods(cluster, ns, run.metadata.name);
    const node = (await getRun(cluster, ns, run.metadata.name)).metadata.annotations?.[
      "affinity.tekton.dev/placed-on"
    ];
    for (const pod of pods.values()) {
      expect(pod.spec?.nodeName).to.equal(node);
      // The tasks use the very claim the placeholder held: ours, adopted by Tekton under its name.
      const claims = (pod.spec?.volumes ?? []).flatMap((v) => v.persistentVolumeClaim?.claimName ?? []);
      expect(claims).to.include(templated);
    }
  });

  it("spreads concurrent runs' placeholders over nodes, as Tekton spreads its assistants", async () => {
    const { cluster } = await e2e();
    const nodes = (await cluster.listNodes()).filter((n) => !n.spec?.unschedulable).length;
    // Two placeholders per node: with the preferred anti-affinity the scheduler fills each node's
    // second slot only after every node has one; at random, 2-2-2 over 3 nodes comes up 12% of the time.
    const count = nodes * 2;
    const ns = await createNamespace(cluster, "spread");
    await applyPolicy(cluster, ns, { mode: "pipelineruns" });
    const runs = await Promise.all(
      Array.from({ length: count }, () =>
        createRun(cluster, pipelineRun(ns, { tasks: [{ name: "hold", seconds: 20 }] })),
      ),
    );
    const placed = await waitFor(`${count} runs placed`, async () => {
      const all = await Promise.all(runs.map((r) => getRun(cluster, ns, r.metadata.name)));
      const on = all.map(placedOnOf);
      return on.every(Boolean) ? (on as string[]) : undefined;
    });
    const perNode = new Map<string, number>();
    for (const node of placed) perNode.set(node, (perNode.get(node) ?? 0) + 1);
    expect([...perNode.values()].sort(), JSON.stringify(Object.fromEntries(perNode))).to.deep.equal(
      Array.from({ length: nodes }, () => 2),
    );
  });

  it("gates a run until its placeholder is scheduled, then cleans the placeholder up", async () => {
    const { cluster } = await e2e();
    const ns = await createNamespace(cluster, "gate");
    await applyPolicy(cluster, ns, { mode: "pipelineruns" });
    const created = await createRun(cluster, pipelineRun(ns, { tasks: [{ name: "one" }] }));
    // The webhook answered before anything was scheduled: the stored run is gated and labelled.
    expect(created.spec.status).to.equal(PENDING_STATUS);
    expect(created.metadata.labels?.[MANAGED_LABEL]).to.equal("true");
    expect(created.metadata.annotations?.[GATED_ANNOTATION]).to.equal("true");
    await waitRunSucceeded(cluster, ns, created.metadata.name);
    const events = (await runEvents(cluster, ns, created.metadata.name)).map((e) => e.reason);
    expect(events).to.include("Placed");
    await waitForEvent(cluster, ns, created.metadata.name, "CleanedUp");
    await waitFor(
      "placeholder pods gone",
      async () => (await placeholderPods(cluster, ns, created.metadata.uid!)).length === 0,
    );
  });

  it("a run its creator made Pending gets nothing until they release it; then the gate holds it until it is placed", async () => {
    const { cluster } = await e2e();
    const ns = await createNamespace(cluster, "user-pending");
    await applyPolicy(cluster, ns, { mode: "pipelineruns" });
    // As a queueing controller (Kueue-style admission) or a user would: created Pending, released later.
    const tenant = await asTenant(cluster, ns);
    const created = await createRun(
      cluster,
      pipelineRun(ns, { tasks: [{ name: "one" }], status: PENDING_STATUS }),
    );
    expect(created.metadata.annotations?.[GATED_ANNOTATION]).to.equal(undefined);
    // Nothing is held for it while its creator holds it: no placeholder, no claim, no maxWait.
    await new Promise((r) => setTimeout(r, 3000));
    expect(await placeholderPods(cluster, ns, created.metadata.uid!)).to.deep.equal([]);
    expect((await getRun(cluster, ns, created.metadata.name)).spec.status).to.equal(PENDING_STATUS);

    // Its creator releases it: the gate takes it over, Pending until its placeholder is scheduled.
    const out = await tenant(
      "patch",
      `pipelinerun/${created.metadata.name}`,
      "--type=json",
      '-p=[{"op":"remove","path":"/spec/status"}]',
    );
    expect(out).to.contain("patched");
    const taken = await getRun(cluster, ns, created.metadata.name);
    expect(taken.metadata.annotations?.[GATED_AT_ANNOTATION], "maxWait counts from the release").to.be.a(
      "string",
    );
    await waitForEvent(cluster, ns, created.metadata.name, "Placed");
    await waitRunSucceeded(cluster, ns, created.metadata.name);
    const nodes = await nodesOf(cluster, ns, created.metadata.name);
    expect(nodes.size).to.equal(1);
    // Placed by the gate (its Placed event above), on the node it recorded.
    const done = await getRun(cluster, ns, created.metadata.name);
    expect([...nodes][0]).to.equal(done.metadata.annotations?.["affinity.tekton.dev/placed-on"]);
  });

  it("workspaces mode: tasks sharing an RWO volumeClaimTemplate follow its placeholder", async () => {
    const { cluster } = await e2e();
    const ns = await createNamespace(cluster, "workspaces");
    await applyPolicy(cluster, ns, { mode: "workspaces" });
    const run = await createRun(
      cluster,
      pipelineRun(ns, {
        workspaces: { source: RWO_TEMPLATE },
        tasks: [
          { name: "first", workspaces: ["source"] },
          { name: "second", runAfter: ["first"], workspaces: ["source"] },
          { name: "third", runAfter: ["first"], workspaces: ["source"] },
        ],
      }),
    );
    await waitRunSucceeded(cluster, ns, run.metadata.name);
    const nodes = await nodesOf(cluster, ns, run.metadata.name);
    expect(nodes.size).to.equal(1);
  });

  it("workspaces mode: a ReadWriteMany cache pins nothing; a task binding it beside its RWO source follows the source", async () => {
    const { cluster } = await e2e();
    const ns = await createNamespace(cluster, "shared-claims");
    await applyPolicy(cluster, ns, { mode: "workspaces" });
    // A shared filesystem (NFS-like: no node affinity) the cache claim binds to.
    const volume = `${ns}-cache`;
    await cluster.clients.core.createPersistentVolume({
      body: {
        metadata: { name: volume },
        spec: {
          storageClassName: "standard",
          capacity: { storage: "1Gi" },
          accessModes: ["ReadWriteMany"],
          persistentVolumeReclaimPolicy: "Retain",
          nfs: { server: "nfs.example", path: `/${ns}` },
        },
      },
    });
    const rwx = {
      volumeClaimTemplate: {
        spec: { accessModes: ["ReadWriteMany"], resources: { requests: { storage: "10Mi" } } },
      },
    };
    const run = await createRun(
      cluster,
      pipelineRun(ns, {
        workspaces: { source: RWO_TEMPLATE, cache: rwx },
        tasks: [
          { name: "build", workspaces: ["source", "cache"] },
          { name: "test", runAfter: ["build"], workspaces: ["source"] },
          { name: "fetch", workspaces: ["cache"] },
        ],
      }),
    );
    const done = await waitRunSucceeded(cluster, ns, run.metadata.name);
    const cacheClaim = tektonClaimName(undefined, "cache", run.metadata.uid!);
    expect(done.metadata.annotations?.[SHARED_CLAIMS_ANNOTATION]).to.equal(cacheClaim);
    const placed = await waitForEvent(cluster, ns, run.metadata.name, "Placed");
    expect(placed.message).to.contain(`${cacheClaim} can be used from every node`);
    // One placeholder, for the source: build follows it (before, its pod was refused for two claims).
    const pods = await taskPods(cluster, ns, run.metadata.name);
    // The run carries its placement (inline pipeline): each task's term selects its claim's placeholder
    // pod by the value of that pod's placement label (the placeholders are gone by now: computed).
    const token = done.metadata.labels?.[PLACEMENT_LABEL];
    expect(token, "the run carries its placement").to.be.a("string");
    const sourceValue = placementValue(token!, "workspaces", {
      claims: [{ name: "", workspaces: ["source"] }],
    });
    const followed = (task: string) =>
      (pods.get(task)?.spec?.affinity?.podAffinity?.requiredDuringSchedulingIgnoredDuringExecution ?? []).map(
        (t) => t.labelSelector?.matchLabels?.[PLACEMENT_LABEL],
      );
    expect(followed("build")).to.deep.equal([sourceValue]);
    expect(followed("test")).to.deep.equal([sourceValue]);
    expect(followed("fetch"), "a task with only the shared cache follows nothing").to.deep.equal([]);
    expect(pods.get("build")?.spec?.nodeName).to.equal(pods.get("test")?.spec?.nodeName);
    await cluster.clients.core.deletePersistentVolume({ name: volume });
  });

  it("workspaces mode: a run without PVC-backed workspaces is released at once", async () => {
    const { cluster } = await e2e();
    const ns = await createNamespace(cluster, "no-pvc");
    await applyPolicy(cluster, ns, { mode: "workspaces" });
    const run = await createRun(cluster, pipelineRun(ns, { tasks: [{ name: "a" }, { name: "b" }] }));
    await waitRunSucceeded(cluster, ns, run.metadata.name);
    const placed = await waitForEvent(cluster, ns, run.metadata.name, "Placed");
    expect(placed.message).to.contain("no PVC-backed workspace");
  });

  it("isolate-pipelinerun: one run per node; run N+1 waits visibly and starts when a node is added (scenario 3)", async () => {
    const { cluster } = await e2e();
    const ns = await createNamespace(cluster, "isolate");
    await applyPolicy(cluster, ns, { mode: "isolate-pipelinerun" });
    const nodeCount = (await cluster.listNodes()).filter((n) => !n.spec?.unschedulable).length;
    const long = () => pipelineRun(ns, { tasks: [{ name: "sleep", seconds: 60 }] });
    const runs: PipelineRun[] = [];
    let added: string | undefined;
    try {
      for (let i = 0; i < nodeCount; i++) runs.push(await createRun(cluster, long()));
      for (const run of runs) await waitReleased(cluster, ns, run.metadata.name);
      const placedOn = await Promise.all(
        runs.map(async (r) => placedOnOf(await getRun(cluster, ns, r.metadata.name))),
      );
      expect(new Set(placedOn).size, `placed on ${placedOn}`).to.equal(nodeCount);

      const extra = await createRun(cluster, long());
      runs.push(extra);
      const waiting = await waitForEvent(cluster, ns, extra.metadata.name, "Waiting", { type: "Warning" });
      expect(waiting.message).to.match(/anti-affinity/);
      const gated = await getRun(cluster, ns, extra.metadata.name);
      expect(gated.spec.status).to.equal(PENDING_STATUS);
      expect(gated.metadata.annotations?.[WAITING_ANNOTATION]).to.contain("cannot be scheduled");

      [added] = await cluster.addNodes(1);
      await waitReleased(cluster, ns, extra.metadata.name);
      expect(placedOnOf(await getRun(cluster, ns, extra.metadata.name))).to.equal(added);
    } finally {
      // Isolated placeholders repel every other placeholder: never leave them behind for later tests.
      await cluster.clients.core.deleteNamespace({ name: ns });
      await waitFor(
        "isolated placeholders gone",
        async () => (await cluster.clients.core.listNamespacedPod({ namespace: ns })).items.length === 0,
      );
      if (added) await cluster.removeNode(added);
    }
  });

  it("three teams: workspaces, isolate-pipelinerun and no policy (scenario 5)", async () => {
    const { cluster } = await e2e();
    const [wsNs, isoNs, freeNs] = await Promise.all([
      createNamespace(cluster, "team-ws"),
      createNamespace(cluster, "team-iso"),
      createNamespace(cluster, "team-free"),
    ]);
    await applyPolicy(cluster, wsNs, { mode: "workspaces" });
    await applyPolicy(cluster, isoNs, { mode: "isolate-pipelinerun", isolation: { scope: "namespace" } });
    const shape = {
      workspaces: { source: RWO_TEMPLATE },
      tasks: [
        { name: "a", workspaces: ["source"] },
        { name: "b", runAfter: ["a"], workspaces: ["source"] },
      ],
    };
    const ws = await createRun(cluster, pipelineRun(wsNs, shape));
    const iso = await createRun(cluster, pipelineRun(isoNs, shape));
    const free = await createRun(cluster, pipelineRun(freeNs, shape));
    expect(ws.metadata.labels?.[MANAGED_LABEL]).to.equal("true");
    expect(iso.metadata.labels?.[MANAGED_LABEL]).to.equal("true");
    // Untouched: no label, no gate, no annotation, no placeholder.
    expect(free.metadata.labels?.[MANAGED_LABEL]).to.equal(undefined);
    expect(free.spec.status).to.equal(undefined);
    expect(
      Object.keys(free.metadata.annotations ?? {}).filter((k) => k.startsWith("affinity.tekton.dev/")),
    ).to.deep.equal([]);
    for (const [ns, run] of [
      [wsNs, ws],
      [isoNs, iso],
      [freeNs, free],
    ] as const)
      await waitRunSucceeded(cluster, ns, run.metadata.name);
    expect(await placeholderPods(cluster, freeNs, free.metadata.uid!)).to.deep.equal([]);
    const freePods = await taskPods(cluster, freeNs, free.metadata.name);
    for (const p of freePods.values()) expect(p.spec?.affinity).to.equal(undefined);
    expect((await nodesOf(cluster, wsNs, ws.metadata.name)).size).to.equal(1);
    expect((await nodesOf(cluster, isoNs, iso.metadata.name)).size).to.equal(1);
  });
});
