// make demo: a local cluster, one controller replica, three teams with three different policies,
// the cordon story, and a run on a real node (a kubelet with containerd) whose task's real output is
// printed. Prints where every pod ran, then stops everything.

import type { V1Pod } from "@kubernetes/client-node";
import { LocalCluster } from "../test/cluster/cluster.js";
import { waitFor } from "../test/cluster/kube.js";
import { REAL_NODE_LABEL } from "../test/cluster/real-node.js";
import { VERSIONS } from "../test/cluster/versions.js";
import { ControllerProcess } from "../test/e2e/controller-process.js";
import { installCrd, waitForGate } from "../test/e2e/env.js";
import {
  applyPolicy,
  createRun,
  getRun,
  pipelineRun,
  placeholderPods,
  RWO_TEMPLATE,
  runEvents,
  taskPods,
  waitForEvent,
  waitRunSucceeded,
  writeThenReadRun,
} from "../test/e2e/helpers.js";

const say = (line = "") => console.log(line);
const table = (rows: string[][]) => {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? "").length)));
  for (const r of rows) say(`  ${r.map((c, i) => c.padEnd(widths[i]!)).join("  ")}`);
};

const FOUR_TASKS = [
  { name: "fetch", workspaces: ["source"] },
  { name: "build", seconds: 10, runAfter: ["fetch"], workspaces: ["source"] },
  { name: "test", seconds: 10, runAfter: ["fetch"], workspaces: ["source"] },
  { name: "publish", runAfter: ["build", "test"], workspaces: ["source"] },
];

async function main(): Promise<void> {
  const started = Date.now();
  say("tekton-affinity demo");
  say("[1/6] starting the local control plane (binaries are built once, then cached)...");
  const cluster = await LocalCluster.start({ nodes: 3, log: (l) => say(`      ${l}`) });
  const controller = new ControllerProcess({
    kubeconfig: cluster.kubeconfig,
    redisUrl: cluster.redisUrl,
    logDir: `${cluster.state.dir}/logs`,
    args: ["--settle-seconds=3"],
  });
  try {
    say(
      `      Kubernetes ${VERSIONS.kubernetes}, Tekton ${VERSIONS.tekton}, KWOK ${VERSIONS.kwok}, 3 fake nodes, Redis ${cluster.redisUrl}`,
    );
    await installCrd(cluster);
    await cluster.clients.core.createNamespace({ body: { metadata: { name: "tekton-affinity" } } });
    await controller.start();
    await waitForGate(cluster);
    say(
      `[2/6] controller replica running: webhooks on https://127.0.0.1:${controller.port}, log ${controller.log}`,
    );

    say("[3/6] three teams, three choices; each runs a four-task pipeline sharing one RWO workspace");
    say("      (build and test run side by side for 10 s). The team without a policy gets what the");
    say("      scheduler may well do: build and test on two nodes (pinned here so the demo is repeatable),");
    say("      and one of them waits on a Multi-Attach until the other lets the volume go:");
    const teams = [
      { ns: "team-workspaces", spec: { mode: "workspaces" as const } },
      { ns: "team-isolate", spec: { mode: "isolate-pipelinerun" as const } },
      { ns: "team-free", spec: undefined },
    ];
    const runs: { ns: string; name: string; uid: string; mode: string }[] = [];
    for (const t of teams) {
      await cluster.clients.core.createNamespace({ body: { metadata: { name: t.ns } } });
      await waitFor(`default ServiceAccount in ${t.ns}`, () =>
        cluster.clients.core.readNamespacedServiceAccount({ name: "default", namespace: t.ns }),
      );
      if (t.spec) await applyPolicy(cluster, t.ns, t.spec);
      const ci = pipelineRun(t.ns, { name: "ci", workspaces: { source: RWO_TEMPLATE }, tasks: FOUR_TASKS });
      if (!t.spec) ci.spec.taskRunSpecs = splitOverNodes(await nodeNames(cluster));
      const run = await createRun(cluster, ci);
      runs.push({
        ns: t.ns,
        name: run.metadata.name,
        uid: run.metadata.uid!,
        mode: t.spec?.mode ?? "(no policy)",
      });
    }
    const rows = [["NAMESPACE", "MODE", "TASK", "NODE"]];
    for (const r of runs) {
      await waitRunSucceeded(cluster, r.ns, r.name);
      const pods = await taskPods(cluster, r.ns, r.name);
      for (const [task, pod] of pods) rows.push([r.ns, r.mode, task, pod.spec?.nodeName ?? "?"]);
      const nodes = new Set([...pods.values()].map((p) => p.spec?.nodeName));
      say(
        `      ${r.ns}/${r.name} succeeded; its ${pods.size} task pods ran on ${nodes.size} node(s): ${[...nodes].join(", ")}`,
      );
    }
    table(rows);
    await showAttachWaits(cluster, "team-free");

    say();
    await isolationStory(cluster);

    say();
    say("[5/6] the cordon story: the node holding a running pipeline's placeholder is cordoned");
    const ns = "team-workspaces";
    const run = await createRun(
      cluster,
      pipelineRun(ns, {
        name: "long",
        workspaces: { source: RWO_TEMPLATE },
        tasks: [
          { name: "first-task", seconds: 20, workspaces: ["source"] },
          { name: "last-task", seconds: 5, runAfter: ["first-task"], workspaces: ["source"] },
        ],
      }),
    );
    const first = await waitFor("first-task running", async () => {
      const pod = (await taskPods(cluster, ns, run.metadata.name)).get("first-task");
      return pod?.status?.phase === "Running" ? pod : undefined;
    });
    const node = first.spec!.nodeName!;
    const before = await placeholderPods(cluster, ns, run.metadata.uid!);
    say(`      before: first-task running on ${node}; placeholder ${podWhere(before[0])}`);
    say(`      kubectl cordon ${node}`);
    await cluster.cordon(node);
    for (const reason of ["Migrating", "Migrated"]) {
      const e = await waitForEvent(cluster, ns, run.metadata.name, reason);
      say(`      event ${reason}: ${e.message}`);
    }
    await waitRunSucceeded(cluster, ns, run.metadata.name, 120_000);
    const pods = await taskPods(cluster, ns, run.metadata.name);
    say(`      after: the run succeeded`);
    table([
      ["TASK", "NODE", "PHASE"],
      ...[...pods].map(([task, p]) => [task, p.spec?.nodeName ?? "?", p.status?.phase ?? "?"]),
    ]);
    const reasons = (await runEvents(cluster, ns, run.metadata.name)).map((e) => e.reason);
    say(
      `      our events on the run: ${[...new Set(reasons)].filter((r): r is string => !!r && /Placed|Migr|Clean|Wait/.test(r)).join(", ")}`,
    );
    await cluster.uncordon(node);

    say();
    await realNodeStory(cluster);
  } finally {
    await controller.stop();
    await cluster.stop();
  }
  say(`demo finished in ${((Date.now() - started) / 1000).toFixed(0)}s; every process stopped`);
}

/** A real node joins; a two-task run there shares a ReadWriteOnce volume for real: the second task
 * prints what the first wrote. */
async function realNodeStory(cluster: LocalCluster): Promise<void> {
  say("[6/6] a real node: a kubelet with containerd, images built here (first time: a few minutes)");
  const [node] = await cluster.addRealNodes(1, (l) => say(`      ${l}`));
  const ns = "team-workspaces";
  const run = await createRun(
    cluster,
    writeThenReadRun(ns, 'echo "written on $(hostname) at $(date -u +%T) by uid $(id -u)" > $NOTE', {
      nodeSelector: { [REAL_NODE_LABEL]: "true" },
    }),
  );
  await waitRunSucceeded(cluster, ns, run.metadata.name, 180_000);
  const pods = await taskPods(cluster, ns, run.metadata.name);
  const read = pods.get("read")!;
  const output = await cluster.kubectlRun("logs", "-n", ns, read.metadata!.name!, "-c", "step-read");
  say(
    `      ${ns}/${run.metadata.name} succeeded on ${node}; kubectl logs ${read.metadata!.name} -c step-read:`,
  );
  say(`        ${output.trim()}`);
}

/** Scenario 3: one isolated run per node; the next one waits, visibly, until a node is added. */
async function isolationStory(cluster: LocalCluster): Promise<void> {
  const ns = "team-isolate";
  const nodes = (await cluster.listNodes()).length;
  say(`[4/6] isolation: ${nodes} long runs in team-isolate take one node each; run ${nodes + 1} must wait`);
  const long = () => pipelineRun(ns, { tasks: [{ name: "sleep", seconds: 30 }] });
  const runs = [];
  for (let i = 0; i < nodes; i++) runs.push(await createRun(cluster, long()));
  const rows = [["RUN", "PLACED ON"]];
  for (const r of runs) rows.push([r.metadata.name, await releasedOn(cluster, ns, r.metadata.name)]);
  table(rows);
  const extra = await createRun(cluster, long());
  const waiting = await waitForEvent(cluster, ns, extra.metadata.name, "Waiting", { type: "Warning" });
  say(`      ${extra.metadata.name} waits: ${waiting.message}`);
  const [added] = await cluster.addNodes(1);
  say(`      node ${added} added`);
  say(`      ${extra.metadata.name} released onto ${await releasedOn(cluster, ns, extra.metadata.name)}`);
  // Isolated placeholders repel every placeholder: clear them before the next story.
  for (const r of [...runs, extra]) {
    await cluster.clients.custom.deleteNamespacedCustomObject({
      group: "tekton.dev",
      version: "v1",
      plural: "pipelineruns",
      namespace: ns,
      name: r.metadata.name,
    });
  }
  await waitFor("isolated placeholders gone", async () => {
    const sets = await cluster.clients.apps.listNamespacedStatefulSet({ namespace: ns });
    return sets.items.length === 0;
  });
}

async function releasedOn(cluster: LocalCluster, ns: string, name: string): Promise<string> {
  return waitFor(`${name} released`, async () => {
    const run = await getRun(cluster, ns, name);
    return run.spec.status === undefined
      ? run.metadata.annotations?.["affinity.tekton.dev/placed-on"]
      : undefined;
  });
}

async function nodeNames(cluster: LocalCluster): Promise<string[]> {
  return (await cluster.listNodes()).map((n) => n.metadata!.name!).sort();
}

/** build on one node, test on another: a placement the scheduler is free to choose. */
function splitOverNodes(nodes: string[]) {
  return ["build", "test"].map((task, i) => ({
    pipelineTaskName: task,
    podTemplate: { nodeSelector: { "kubernetes.io/hostname": nodes[i % nodes.length]! } },
  })) as never;
}

/** The Multi-Attach waits of a namespace's pods (FailedAttachVolume events), with how long each lasted. */
async function showAttachWaits(cluster: LocalCluster, ns: string): Promise<void> {
  const events = (
    await cluster.clients.core.listNamespacedEvent({
      namespace: ns,
      fieldSelector: "reason=FailedAttachVolume",
    })
  ).items;
  if (events.length === 0) {
    say(`      ${ns}: no task waited for its volume this time`);
    return;
  }
  for (const e of events) {
    const waited =
      (new Date(e.lastTimestamp ?? 0).getTime() - new Date(e.firstTimestamp ?? 0).getTime()) / 1000;
    say(`      ${ns}: pod ${e.involvedObject.name} waited ${waited.toFixed(0)}+ s: ${e.message}`);
  }
  say("      (with a longer build, that task is stuck for as long: the failure co-scheduling prevents)");
}

function podWhere(pod: V1Pod | undefined): string {
  return pod ? `${pod.metadata?.name} on ${pod.spec?.nodeName}` : "(none)";
}

main().catch((err: Error) => {
  console.error(`demo failed: ${err.message}`);
  process.exit(1);
});
