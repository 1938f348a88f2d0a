// bench/migration: how fast placeholders leave a node that becomes unusable. For each migration:
//   deletion  = node cordoned -> placeholder pod deleted (deletionTimestamp set by our controller)
//   scheduled = node cordoned -> the StatefulSet's new placeholder pod scheduled on another node
// Settle period 0 (move at once), so the figures measure the controller, not the policy.
// Writes bench/results/migration.json and prints p50, p99 and max.
//
//   npx tsx bench/migration.ts [--migrations 50]

import { writeFileSync } from "node:fs";
import { cpus } from "node:os";
import { resolve } from "node:path";
import * as k8s from "@kubernetes/client-node";
import { PLACEHOLDER_LABEL } from "../src/api/constants.js";
import { LocalCluster } from "../test/cluster/cluster.js";
import { waitFor } from "../test/cluster/kube.js";
import { ControllerProcess } from "../test/e2e/controller-process.js";
import { installCrd, waitForGate } from "../test/e2e/env.js";
import { applyPolicy, createNamespace, createRun, pipelineRun } from "../test/e2e/helpers.js";

const RESULTS = resolve(import.meta.dirname, "results", "migration.json");
const arg = process.argv.indexOf("--migrations");
const TARGET = arg > 0 ? Number(process.argv[arg + 1]) : 50;
const RUNS = 12;
const NODES = 4;

function stats(values: number[]) {
  const s = [...values].sort((a, b) => a - b);
  const at = (p: number) => Math.round(s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]!);
  return { count: s.length, p50: at(50), p99: at(99), max: Math.round(s.at(-1)!) };
}

async function main() {
  const cluster = await LocalCluster.start({ nodes: NODES });
  const controller = new ControllerProcess({
    kubeconfig: cluster.kubeconfig,
    redisUrl: cluster.redisUrl,
    logDir: `${cluster.state.dir}/logs`,
    args: ["--settle-seconds=0", "--log-level=info"],
  });
  try {
    await installCrd(cluster);
    await cluster.clients.core.createNamespace({ body: { metadata: { name: "tekton-affinity" } } });
    await controller.start();
    await waitForGate(cluster);
    const ns = await createNamespace(cluster, "migrate");
    await applyPolicy(cluster, ns, { mode: "pipelineruns" });
    // Long runs: their placeholders stay for the whole benchmark.
    for (let i = 0; i < RUNS; i++)
      await createRun(cluster, pipelineRun(ns, { tasks: [{ name: "long", seconds: 3600 }] }));

    // Watch placeholder pods: deletion and (re)scheduling times, by StatefulSet.
    const deletedAt = new Map<string, number>(); // pod uid -> time deletion observed
    const scheduledAt = new Map<string, { node: string; at: number }>(); // pod uid -> node, time
    const pods = k8s.makeInformer(
      cluster.clients.kc,
      `/api/v1/namespaces/${ns}/pods`,
      () => cluster.clients.core.listNamespacedPod({ namespace: ns, labelSelector: PLACEHOLDER_LABEL }),
      PLACEHOLDER_LABEL,
    );
    const observe = (pod: k8s.V1Pod) => {
      const uid = pod.metadata?.uid ?? "";
      if (pod.metadata?.deletionTimestamp && !deletedAt.has(uid)) deletedAt.set(uid, performance.now());
      if (pod.spec?.nodeName && !scheduledAt.has(uid))
        scheduledAt.set(uid, { node: pod.spec.nodeName, at: performance.now() });
    };
    pods.on("add", observe);
    pods.on("update", observe);
    pods.on("delete", (pod) => {
      if (!deletedAt.has(pod.metadata?.uid ?? "")) deletedAt.set(pod.metadata?.uid ?? "", performance.now());
    });
    await pods.start();
    await waitFor(
      "every placeholder scheduled",
      async () => pods.list().filter((p) => p.spec?.nodeName).length >= RUNS,
      {
        timeoutMs: 120_000,
      },
    );

    const deletion: number[] = [];
    const scheduled: number[] = [];
    let round = 0;
    while (deletion.length < TARGET) {
      const live = pods.list().filter((p) => p.spec?.nodeName && !p.metadata?.deletionTimestamp);
      const counts = new Map<string, k8s.V1Pod[]>();
      for (const p of live) counts.set(p.spec!.nodeName!, [...(counts.get(p.spec!.nodeName!) ?? []), p]);
      const [node, victims] = [...counts].sort((a, b) => b[1].length - a[1].length)[0]!;
      const sets = victims.map((p) => p.metadata!.labels![PLACEHOLDER_LABEL]!);
      const t0 = performance.now();
      await cluster.cordon(node);
      await waitFor(
        `round ${round}: ${victims.length} placeholder(s) off ${node}`,
        async () =>
          sets.every((set) =>
            pods
              .list()
              .some(
                (p) =>
                  p.metadata?.labels?.[PLACEHOLDER_LABEL] === set &&
                  p.spec?.nodeName &&
                  p.spec.nodeName !== node &&
                  !p.metadata?.deletionTimestamp,
              ),
          ),
        { timeoutMs: 60_000, intervalMs: 20 },
      );
      for (const victim of victims) {
        const set = victim.metadata!.labels![PLACEHOLDER_LABEL]!;
        const replacement = pods
          .list()
          .find(
            (p) =>
              p.metadata?.labels?.[PLACEHOLDER_LABEL] === set && p.metadata?.uid !== victim.metadata?.uid,
          );
        deletion.push(deletedAt.get(victim.metadata!.uid!)! - t0);
        scheduled.push(scheduledAt.get(replacement!.metadata!.uid!)!.at - t0);
      }
      await cluster.uncordon(node);
      round++;
    }
    await pods.stop();
    const result = {
      benchmark: "migration",
      date: new Date().toISOString(),
      machine: { cpus: cpus().length },
      setup: { nodes: NODES, runs: RUNS, rounds: round, settleSeconds: 0 },
      deletionMs: stats(deletion),
      scheduledMs: stats(scheduled),
    };
    writeFileSync(RESULTS, `${JSON.stringify(result, null, 2)}\n`);
    console.log(`\nmigration: ${deletion.length} placeholder moves in ${round} cordons (ms from the cordon)`);
    console.log("measure                    p50     p99     max");
    for (const [name, s] of [
      ["cordon -> pod deleted", result.deletionMs],
      ["cordon -> new pod scheduled", result.scheduledMs],
    ] as const) {
      console.log(`${name.padEnd(26)} ${String(s.p50).padEnd(7)} ${String(s.p99).padEnd(7)} ${s.max}`);
    }
    console.log(`(goal: deletion p99 < 1000 ms; results in ${RESULTS})`);
  } finally {
    await controller.stop();
    await cluster.stop();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
