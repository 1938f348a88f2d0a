// bench/placement: placement throughput (runs un-gated per second) and latency (create -> un-gated)
// with 1, 2 and 3 controller replicas, all against one local cluster in one run so the figures compare
// as ratios. Also records the CPU time each component used in each phase, to show what saturates.
// Writes bench/results/placement.json and prints a table.
//
//   npx tsx bench/placement.ts [--runs 100]

import { readFileSync, writeFileSync } from "node:fs";
import { cpus } from "node:os";
import { join, resolve } from "node:path";
import * as k8s from "@kubernetes/client-node";
import { PLACED_ON_ANNOTATION } from "../src/reconcilers/pipelinerun.js";
import { LocalCluster } from "../test/cluster/cluster.js";
import { waitFor } from "../test/cluster/kube.js";
import { installCrd } from "../test/e2e/env.js";
import { applyPolicy, createNamespace, createRun, pipelineRun } from "../test/e2e/helpers.js";
import { ReplicaSet } from "../test/e2e/replicas.js";

const RESULTS = resolve(import.meta.dirname, "results", "placement.json");
const runsArg = process.argv.indexOf("--runs");
const RUNS = runsArg > 0 ? Number(process.argv[runsArg + 1]) : 100;
const CONCURRENT_CREATES = 20;

function cpuSeconds(pid: number): number {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
    return (Number(fields[11]) + Number(fields[12])) / 100; // utime + stime, in clock ticks
  } catch {
    return 0;
  }
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

async function phase(cluster: LocalCluster, replicaCount: number) {
  const ns = await createNamespace(cluster, `bench-${replicaCount}`);
  const replicas = new ReplicaSet(
    cluster,
    replicaCount,
    ["--log-level=info"],
    join(cluster.state.dir, "logs"),
    `bench${replicaCount}`,
  );
  await replicas.start();
  await applyPolicy(cluster, ns, { mode: "pipelineruns" });

  const ungated = new Map<string, number>();
  const custom = cluster.clients.custom;
  const informer = k8s.makeInformer(
    cluster.clients.kc,
    `/apis/tekton.dev/v1/namespaces/${ns}/pipelineruns`,
    () =>
      custom.listNamespacedCustomObject({
        group: "tekton.dev",
        version: "v1",
        plural: "pipelineruns",
        namespace: ns,
      }),
  );
  const observe = (run: k8s.KubernetesObject & { spec?: { status?: string } }) => {
    const name = run.metadata?.name ?? "";
    if (
      !ungated.has(name) &&
      run.spec?.status === undefined &&
      run.metadata?.annotations?.[PLACED_ON_ANNOTATION]
    ) {
      ungated.set(name, performance.now());
    }
  };
  informer.on("add", observe);
  informer.on("update", observe);
  await informer.start();

  const components = [
    ...cluster.status().map((c) => ({ name: c.name, pid: c.pid })),
    ...replicas.replicas.map((r, i) => ({ name: `replica-${i}`, pid: r.pid })),
  ];
  const cpuBefore = new Map(components.map((c) => [c.name, cpuSeconds(c.pid)]));
  const createdAt = new Map<string, number>();
  const started = performance.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: CONCURRENT_CREATES }, async () => {
      while (next < RUNS) {
        next++;
        const run = pipelineRun(ns, { tasks: [{ name: "t" }] });
        const t0 = performance.now();
        await createRun(cluster, run);
        createdAt.set(run.metadata.name, t0);
      }
    }),
  );
  await waitFor(`${RUNS} runs un-gated`, async () => ungated.size >= RUNS, {
    timeoutMs: 600_000,
    intervalMs: 100,
  });
  const finished = Math.max(...ungated.values());
  const cpu = Object.fromEntries(
    components.map((c) => [c.name, +(cpuSeconds(c.pid) - cpuBefore.get(c.name)!).toFixed(2)]),
  );
  await informer.stop();
  await replicas.stop();
  await cluster.clients.core.deleteNamespace({ name: ns });

  const latencies = [...createdAt].map(([name, t]) => ungated.get(name)! - t).sort((a, b) => a - b);
  const wallSeconds = (finished - started) / 1000;
  return {
    replicas: replicaCount,
    runs: RUNS,
    wallSeconds: +wallSeconds.toFixed(2),
    throughputPerSecond: +(RUNS / wallSeconds).toFixed(2),
    latencyMs: {
      p50: Math.round(percentile(latencies, 50)),
      p99: Math.round(percentile(latencies, 99)),
      max: Math.round(latencies.at(-1)!),
    },
    cpuSeconds: cpu,
  };
}

async function main() {
  const cluster = await LocalCluster.start({ nodes: 3 });
  try {
    await installCrd(cluster);
    await cluster.clients.core.createNamespace({ body: { metadata: { name: "tekton-affinity" } } });
    const phases = [];
    for (const n of [1, 2, 3]) {
      console.error(`[bench] ${n} replica(s), ${RUNS} runs...`);
      phases.push(await phase(cluster, n));
    }
    const result = {
      benchmark: "placement",
      date: new Date().toISOString(),
      machine: { cpus: cpus().length },
      runsPerPhase: RUNS,
      phases,
    };
    writeFileSync(RESULTS, `${JSON.stringify(result, null, 2)}\n`);
    console.log("\nplacement: runs un-gated per second and create->un-gated latency");
    console.log("replicas  runs  runs/s  p50 ms  p99 ms  max ms  busiest components (CPU s)");
    for (const p of phases) {
      const busiest = Object.entries(p.cpuSeconds)
        .sort((a, b) => b[1] - a[1])
        .slice(0, 3)
        .map(([n, s]) => `${n} ${s}`)
        .join(", ");
      console.log(
        `${String(p.replicas).padEnd(8)}  ${String(p.runs).padEnd(4)}  ${String(p.throughputPerSecond).padEnd(6)}  ${String(p.latencyMs.p50).padEnd(6)}  ${String(p.latencyMs.p99).padEnd(6)}  ${String(p.latencyMs.max).padEnd(6)}  ${busiest}`,
      );
    }
    const [one, , three] = phases;
    console.log(
      `\n3 replicas / 1 replica throughput: ${(three!.throughputPerSecond / one!.throughputPerSecond).toFixed(2)}x (results in ${RESULTS})`,
    );
  } finally {
    await cluster.stop();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
