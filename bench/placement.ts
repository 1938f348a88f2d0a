// bench/placement: placement throughput (runs un-gated per second) and latency (create -> un-gated)
// with 1, 2 and 3 controller replicas, all against one local cluster in one run so the figures compare
// as ratios. Also records the CPU time each component used in each phase, to show what saturates.
// Writes bench/results/placement.json and prints a table.
//
//   npx tsx bench/placement.ts [--runs 100]
//
// Two measures per replica count: latency of runs created at a steady pace, and the release rate of a
// burst of runs that all become placeable at once (a node label appears), which does not depend on how
// fast this script can create runs. Per phase also: reconcile jobs per run and the replicas' CPU per
// run, counted over the runs' whole life (until every run has succeeded and the replicas are idle).

import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { cpus } from "node:os";
import { join, resolve } from "node:path";
import * as k8s from "@kubernetes/client-node";
import { PLACED_ON_ANNOTATION, PLACEHOLDER_LABEL } from "../src/api/constants.js";
import { LocalCluster } from "../test/cluster/cluster.js";
import { waitFor } from "../test/cluster/kube.js";
import { sleep } from "../test/cluster/processes.js";
import { installCrd } from "../test/e2e/env.js";
import {
  applyPolicy,
  createNamespace,
  createRun,
  listRuns,
  metricSum,
  pipelineRun,
  succeeded,
  waitUntilSteady,
} from "../test/e2e/helpers.js";
import { ReplicaSet } from "../test/e2e/replicas.js";
import { compiledController, percentile } from "./measure.js";

const RESULTS = resolve(import.meta.dirname, "results", "placement.json");
const runsArg = process.argv.indexOf("--runs");
const RUNS = runsArg > 0 ? Number(process.argv[runsArg + 1]) : 100;
const CONCURRENT_CREATES = 20;
const LATENCY_RUNS = 40;
const PACE_PER_SECOND = 5;

/** CPU seconds used so far by every process in a process group (components run detached, each in its
 * own group; a replica's group includes the node process tsx starts under it). */
function cpuSeconds(pgid: number): number {
  let ticks = 0;
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const fields = readFileSync(`/proc/${entry}/stat`, "utf8").split(") ")[1]!.split(" ");
      if (Number(fields[2]) === pgid) ticks += Number(fields[11]) + Number(fields[12]); // utime + stime
    } catch {
      // the process ended while we looked
    }
  }
  return ticks / 100;
}

/** Watches a namespace's runs and records when each is released from the gate (placed). */
async function watchReleases(cluster: LocalCluster, ns: string) {
  const released = new Map<string, number>();
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
      !released.has(name) &&
      run.spec?.status === undefined &&
      run.metadata?.annotations?.[PLACED_ON_ANNOTATION]
    ) {
      released.set(name, performance.now());
    }
  };
  informer.on("add", observe);
  informer.on("update", observe);
  await informer.start();
  return { released, stop: () => informer.stop() };
}

async function phase(cluster: LocalCluster, replicaCount: number) {
  const replicas = new ReplicaSet(
    cluster,
    replicaCount,
    ["--log-level=info"],
    join(cluster.state.dir, "logs"),
    `bench${replicaCount}`,
    // As the image runs it: CPU per run is the product's, not tsx's.
    compiledController(),
  );
  await replicas.start();
  const components = [
    ...cluster.status().map((c) => ({ name: c.name, pid: c.pid })),
    ...replicas.replicas.map((r, i) => ({ name: `replica-${i}`, pid: r.pid })),
  ];
  // Jobs and controller CPU per run, over the runs' whole life (creation to cleanup).
  const jobs = async () =>
    (await Promise.all(replicas.replicas.map((r) => r.metrics()))).reduce(
      (sum, m) => sum + metricSum(m, "tekton_affinity_job_duration_seconds_count"),
      0,
    );
  // Why a job ran late: it stepped aside for another job of its object (the object lock), or failed
  // and was retried with backoff (a 409 from a stale cache, among others).
  const counter = (name: string) => async () =>
    (await Promise.all(replicas.replicas.map((r) => r.metrics()))).reduce(
      (sum, m) => sum + metricSum(m, name),
      0,
    );
  const lockBusy = counter("tekton_affinity_object_lock_busy_total");
  const retries = counter("tekton_affinity_job_retries_total");
  const lockBusyAtStart = await lockBusy();
  const retriesAtStart = await retries();
  const controllerCpu = () => replicas.replicas.reduce((sum, r) => sum + cpuSeconds(r.pid), 0);
  const jobsAtStart = await jobs();
  const cpuAtStart = controllerCpu();

  // Latency: runs created at a steady pace; create -> released.
  const latencyNs = await createNamespace(cluster, `bench-latency-${replicaCount}`);
  await applyPolicy(cluster, latencyNs, { mode: "pipelineruns" });
  const paced = await watchReleases(cluster, latencyNs);
  const createdAt = new Map<string, number>();
  for (let i = 0; i < LATENCY_RUNS; i++) {
    const run = pipelineRun(latencyNs, { tasks: [{ name: "t" }] });
    createdAt.set(run.metadata.name, performance.now());
    await createRun(cluster, run);
    await sleep(1000 / PACE_PER_SECOND);
  }
  await waitFor(`${LATENCY_RUNS} paced runs released`, async () => paced.released.size >= LATENCY_RUNS, {
    timeoutMs: 300_000,
    intervalMs: 50,
  });
  await paced.stop();
  const latencies = [...createdAt].map(([name, t]) => paced.released.get(name)! - t).sort((a, b) => a - b);

  // Throughput: RUNS runs wait for a node label no node has; labelling every node releases them all
  // at once, so the rate measured is placement's, not the rate at which this script creates runs.
  const label = `bench-ready-${replicaCount}`;
  const burstNs = await createNamespace(cluster, `bench-burst-${replicaCount}`);
  await applyPolicy(cluster, burstNs, {
    mode: "pipelineruns",
    placeholder: { nodeSelector: { [label]: "yes" } },
  });
  const burst = await watchReleases(cluster, burstNs);
  let next = 0;
  await Promise.all(
    Array.from({ length: CONCURRENT_CREATES }, async () => {
      while (next++ < RUNS) await createRun(cluster, pipelineRun(burstNs, { tasks: [{ name: "t" }] }));
    }),
  );
  await waitFor(
    "every burst placeholder pending",
    async () => {
      const pods = await cluster.clients.core.listNamespacedPod({
        namespace: burstNs,
        labelSelector: PLACEHOLDER_LABEL,
      });
      return (
        pods.items.filter((p) =>
          p.status?.conditions?.some((c) => c.type === "PodScheduled" && c.status === "False"),
        ).length >= RUNS
      );
    },
    { timeoutMs: 300_000, intervalMs: 500 },
  );
  const cpuBefore = new Map(components.map((c) => [c.name, cpuSeconds(c.pid)]));
  const released = performance.now();
  await cluster.kubectlRun("label", "nodes", "--all", `${label}=yes`);
  await waitFor(`${RUNS} runs released`, async () => burst.released.size >= RUNS, {
    timeoutMs: 600_000,
    intervalMs: 50,
  });
  const wallSeconds = (Math.max(...burst.released.values()) - released) / 1000;
  const cpu = Object.fromEntries(
    components.map((c) => [c.name, +(cpuSeconds(c.pid) - cpuBefore.get(c.name)!).toFixed(2)]),
  );
  await burst.stop();
  await waitFor(
    "every run of the phase to succeed and be cleaned up",
    async () => {
      for (const namespace of [latencyNs, burstNs])
        if ((await listRuns(cluster, namespace)).some((r) => succeeded(r) !== "True")) return false;
      return true;
    },
    { timeoutMs: 600_000, intervalMs: 1000 },
  );
  const jobsAtEnd = await waitUntilSteady("the replicas to go idle", jobs);
  const runsInPhase = LATENCY_RUNS + RUNS;
  const jobsPerRun = +((jobsAtEnd - jobsAtStart) / runsInPhase).toFixed(2);
  const controllerCpuMsPerRun = +(((controllerCpu() - cpuAtStart) * 1000) / runsInPhase).toFixed(2);
  const lockBusyPerRun = +(((await lockBusy()) - lockBusyAtStart) / runsInPhase).toFixed(2);
  const retriesPerRun = +(((await retries()) - retriesAtStart) / runsInPhase).toFixed(2);
  await replicas.stop();
  await cluster.clients.core.deleteNamespace({ name: latencyNs });
  await cluster.clients.core.deleteNamespace({ name: burstNs });

  return {
    replicas: replicaCount,
    latency: {
      runs: LATENCY_RUNS,
      pacePerSecond: PACE_PER_SECOND,
      ms: {
        p50: Math.round(percentile(latencies, 50)),
        p99: Math.round(percentile(latencies, 99)),
        max: Math.round(latencies.at(-1)!),
      },
    },
    throughput: {
      runs: RUNS,
      wallSeconds: +wallSeconds.toFixed(2),
      releasedPerSecond: +(RUNS / wallSeconds).toFixed(2),
    },
    cpuSecondsDuringBurst: cpu,
    jobsPerRun,
    controllerCpuMsPerRun,
    lockBusyPerRun,
    retriesPerRun,
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
    console.log(
      `\nplacement: latency of runs created at ${PACE_PER_SECOND}/s (create -> released), and release rate of ${RUNS} waiting runs`,
    );
    console.log(
      "replicas  p50 ms  p99 ms  max ms  released/s  jobs/run  ctrl CPU ms/run  lock busy/run  retries/run  busiest during the burst (CPU s)",
    );
    for (const p of phases) {
      const busiest = Object.entries(p.cpuSecondsDuringBurst)
        .sort((a, b) => b[1] - a[1])
        .slice(0, 4)
        .map(([n, s]) => `${n} ${s}`)
        .join(", ");
      const l = p.latency.ms;
      const cols = [p.replicas, l.p50, l.p99, l.max].map((v) => String(v).padEnd(6)).join("  ");
      const perRun = [
        String(p.jobsPerRun).padEnd(8),
        String(p.controllerCpuMsPerRun).padEnd(15),
        String(p.lockBusyPerRun).padEnd(13),
        String(p.retriesPerRun).padEnd(11),
      ].join("  ");
      console.log(`${cols}  ${String(p.throughput.releasedPerSecond).padEnd(10)}  ${perRun}  ${busiest}`);
    }
    const [one, , three] = phases;
    const ratio = three!.throughput.releasedPerSecond / one!.throughput.releasedPerSecond;
    console.log(`\n3 replicas / 1 replica release rate: ${ratio.toFixed(2)}x (results in ${RESULTS})`);
  } finally {
    await cluster.stop();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
