// bench/scale: how fast the scheduler places task pods on a large cluster with each placement strategy,
// beside runs no policy touches, and what one controller replica holds in memory while it does.
// Writes bench/results/scale.json and prints a table.
//
//   npx tsx bench/scale.ts [--nodes 1000,2000] [--runs 500] [--tasks 2] [--memory-runs 10000]
//                          [--memory-nodes 5000]
//
// One local control plane with KWOK nodes, grown to each size in turn. Per size, three phases in one
// run, each in its own namespace, each with --runs PipelineRuns of --tasks parallel tasks:
//   baseline     no AffinityPolicy: Tekton and the scheduler alone;
//   podAffinity  mode pipelineruns, strategy podAffinity (task pods require the placeholder's node
//                through inter-pod affinity, which the scheduler evaluates against every node);
//   nodePinning  mode pipelineruns, strategy nodePinning (task pods carry a node affinity to the
//                placeholder's node, which the scheduler filters cheaply).
// podsPerSecond is task pods scheduled per second, from the first task pod seen to the last one bound,
// watched through an informer. Each phase's namespace is deleted before the next, so no phase pays for
// another's pods. The controller's RSS and cache sizes come from its own /metrics, sampled through the
// size's phases; the peak is reported.
//
// Memory (at the largest size, --memory-runs, 0 to skip): what one replica holds with that many managed
// runs and every node cached, run as production runs it (compiled JavaScript, as the image does, not
// under tsx). The runs are created finished: labelled and annotated as the gate would (while no gate
// answers: failurePolicy Ignore), held pending so that Tekton runs none of them, then given a
// Succeeded=True status. That is the steady state of a cluster that keeps its run history: every
// finished run stays managed and cached until it is pruned. A fresh replica then lists them all,
// reconciles each once, and its RSS is sampled once its work queue is idle (settled) and throughout
// (peak). Active runs cost more (each has a placeholder StatefulSet and pod cached): the phases above
// measure that at their size.
// The cluster is topped up to --memory-nodes Node objects first. KWOK heartbeats each of its nodes
// every 10 s, and this machine cannot keep 5,000 of them Ready (a try: 2,041 turned Ready, then the
// count fell); the memory a cached node costs does not depend on its heartbeat, so the nodes beyond the
// KWOK ones are Node objects nobody heartbeats, shaped like KWOK's (labels, zone, capacity), which
// kube-controller-manager then marks NotReady and taints, as it would a lost kubelet's.

import { readFileSync, writeFileSync } from "node:fs";
import { cpus } from "node:os";
import { join, resolve } from "node:path";
import * as k8s from "@kubernetes/client-node";
import {
  MANAGED_LABEL,
  MODE_ANNOTATION,
  PLACEHOLDER_LABEL,
  POLICY_ANNOTATION,
} from "../src/api/constants.js";
import type { AffinityPolicySpec } from "../src/api/types.js";
import { LocalCluster } from "../test/cluster/cluster.js";
import { waitFor } from "../test/cluster/kube.js";
import { ControllerProcess } from "../test/e2e/controller-process.js";
import { installCrd } from "../test/e2e/env.js";
import {
  applyPolicy,
  createNamespace,
  createRun,
  listRuns,
  metricSum,
  pipelineRun,
  succeeded,
} from "../test/e2e/helpers.js";
import { ReplicaSet } from "../test/e2e/replicas.js";
import { compiledController, percentile } from "./measure.js";

const RESULTS = resolve(import.meta.dirname, "results", "scale.json");

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? (process.argv[i + 1] ?? fallback) : fallback;
}
const SIZES = arg("nodes", "1000")
  .split(",")
  .map(Number)
  .sort((a, b) => a - b);
const RUNS = Number(arg("runs", "500"));
const TASKS = Number(arg("tasks", "2"));
const CONCURRENT_CREATES = 10;
const MEMORY_RUNS = Number(arg("memory-runs", "10000"));
const MEMORY_NAMESPACES = 10;
const MEMORY_NODES = Number(arg("memory-nodes", "5000"));

type Strategy = "baseline" | "podAffinity" | "nodePinning";
const STRATEGIES: Strategy[] = ["baseline", "podAffinity", "nodePinning"];

/** Records, per task pod of a namespace, when it was first seen and when it was first seen bound. */
async function watchTaskPods(cluster: LocalCluster, namespace: string) {
  const seen = new Map<string, number>();
  const bound = new Map<string, number>();
  const core = cluster.clients.core;
  // Tekton labels its task pods with their run; placeholders carry our label and are not task pods.
  const selector = `tekton.dev/pipelineRun,!${PLACEHOLDER_LABEL}`;
  const informer = k8s.makeInformer(
    cluster.clients.kc,
    `/api/v1/namespaces/${namespace}/pods`,
    () => core.listNamespacedPod({ namespace, labelSelector: selector }),
    selector,
  );
  const observe = (pod: k8s.V1Pod) => {
    const name = pod.metadata?.name ?? "";
    const now = performance.now();
    if (!seen.has(name)) seen.set(name, now);
    if (pod.spec?.nodeName && !bound.has(name)) bound.set(name, now);
  };
  informer.on("add", observe);
  informer.on("update", observe);
  await informer.start();
  return { seen, bound, stop: () => informer.stop() };
}

/** Peak controller RSS and cache sizes, sampled from its /metrics while a size's phases run. */
class ControllerSampler {
  rssMb = 0;
  managedRunsCached = 0;
  nodesCached = 0;
  private timer?: NodeJS.Timeout;

  constructor(private readonly replicas: ReplicaSet) {}

  start(): void {
    this.timer = setInterval(() => void this.sample().catch(() => undefined), 2000);
  }

  async sample(): Promise<void> {
    const m = await this.replicas.replicas[0]!.metrics();
    const rss = metricSum(m, "tekton_affinity_process_resident_memory_bytes") / 2 ** 20;
    this.rssMb = Math.max(this.rssMb, Math.round(rss));
    const cached = (kind: string) => metricSum(m, "tekton_affinity_cached_objects", `kind="${kind}"`);
    this.managedRunsCached = Math.max(this.managedRunsCached, cached("PipelineRun"));
    this.nodesCached = Math.max(this.nodesCached, cached("Node"));
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.sample();
  }
}

async function phase(cluster: LocalCluster, nodes: number, strategy: Strategy, sampler: ControllerSampler) {
  const ns = await createNamespace(cluster, `scale-${nodes}-${strategy.toLowerCase()}`);
  if (strategy !== "baseline") {
    const spec: AffinityPolicySpec = { mode: "pipelineruns", strategy };
    await applyPolicy(cluster, ns, spec);
  }
  const pods = await watchTaskPods(cluster, ns);
  const tasks = Array.from({ length: TASKS }, (_, i) => ({ name: `t${i}` }));
  let next = 0;
  await Promise.all(
    Array.from({ length: CONCURRENT_CREATES }, async () => {
      while (next++ < RUNS) await createRun(cluster, pipelineRun(ns, { tasks }));
    }),
  );
  const expected = RUNS * TASKS;
  await waitFor(`${expected} task pods bound in ${ns}`, async () => pods.bound.size >= expected, {
    timeoutMs: 1_200_000,
    intervalMs: 500,
  });
  await sampler.sample();
  await pods.stop();
  const first = Math.min(...pods.seen.values());
  const last = Math.max(...pods.bound.values());
  const pending = [...pods.bound].map(([name, at]) => at - pods.seen.get(name)!).sort((a, b) => a - b);
  await waitFor(
    `every run in ${ns} to succeed`,
    async () => (await listRuns(cluster, ns)).every((r) => succeeded(r) === "True"),
    { timeoutMs: 1_200_000, intervalMs: 2000 },
  );
  await cluster.clients.core.deleteNamespace({ name: ns });
  await waitFor(
    `namespace ${ns} to be gone`,
    async () =>
      cluster.clients.core.readNamespace({ name: ns }).then(
        () => false,
        () => true,
      ),
    { timeoutMs: 600_000, intervalMs: 1000 },
  );
  return {
    strategy,
    taskPods: expected,
    podsPerSecond: +(expected / ((last - first) / 1000)).toFixed(1),
    createdToBoundMs: {
      p50: Math.round(percentile(pending, 50) || 0),
      p99: Math.round(percentile(pending, 99) || 0),
    },
  };
}

/** Runs `work(i)` for i in [0, count) with `concurrency` at a time. */
async function inParallel(count: number, concurrency: number, work: (i: number) => Promise<unknown>) {
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < count) await work(next++);
    }),
  );
}

/** A Node object shaped like KWOK's, that no KWOK manages (so nothing heartbeats it). */
function unmanagedNode(name: string, zone: string): k8s.V1Node {
  const room = { cpu: "32", memory: "256Gi", pods: "250" };
  return {
    apiVersion: "v1",
    kind: "Node",
    metadata: {
      name,
      labels: {
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "topology.kubernetes.io/zone": zone,
        type: "memory-bench",
      },
    },
    status: { allocatable: room, capacity: room },
  };
}

/** One replica's RSS with MEMORY_RUNS finished managed runs and the cluster's nodes cached. */
async function memory(cluster: LocalCluster, nodes: number) {
  const have = (await cluster.listNodes()).length;
  if (MEMORY_NODES > have) {
    console.error(`[bench] memory: topping the cluster up from ${have} to ${MEMORY_NODES} Node objects...`);
    await inParallel(MEMORY_NODES - have, 20, (i) =>
      cluster.clients.core.createNode({
        body: unmanagedNode(`memory-node-${i}`, cluster.zones[i % cluster.zones.length]!),
      }),
    );
  }
  const compiled = compiledController();
  const logDir = join(cluster.state.dir, "logs");
  // First the same replica with the nodes cached and no run: what the process costs before any run.
  const empty = new ControllerProcess({
    kubeconfig: cluster.kubeconfig,
    redisUrl: cluster.redisUrl,
    logDir,
    replicaId: "scale-memory-empty",
    args: ["--log-level=info"],
    entry: compiled,
  });
  await empty.start();
  await new Promise((r) => setTimeout(r, 10_000));
  const emptyMetrics = await empty.metrics();
  const emptyRssMb = Math.round(
    metricSum(emptyMetrics, "tekton_affinity_process_resident_memory_bytes") / 2 ** 20,
  );
  const emptyHeapMb = Math.round(
    metricSum(emptyMetrics, "tekton_affinity_nodejs_heap_size_used_bytes") / 2 ** 20,
  );
  await empty.stop();
  const namespaces: string[] = [];
  for (let i = 0; i < MEMORY_NAMESPACES; i++) {
    namespaces.push(await createNamespace(cluster, "scale-memory"));
  }
  console.error(`[bench] memory: creating ${MEMORY_RUNS} finished managed runs...`);
  const { custom } = cluster.clients;
  const target = (i: number) => ({
    group: "tekton.dev",
    version: "v1",
    plural: "pipelineruns",
    namespace: namespaces[i % MEMORY_NAMESPACES]!,
    name: `done-${i}`,
  });
  await inParallel(MEMORY_RUNS, 20, async (i) => {
    const { group, version, plural, namespace, name } = target(i);
    const run = pipelineRun(namespace, { name, tasks: [{ name: "build" }, { name: "test" }] });
    run.metadata.labels = { ...run.metadata.labels, [MANAGED_LABEL]: "true" };
    run.metadata.annotations = {
      ...run.metadata.annotations,
      [POLICY_ANNOTATION]: "default",
      [MODE_ANNOTATION]: "pipelineruns",
    };
    run.spec.status = "PipelineRunPending";
    await custom.createNamespacedCustomObject({ group, version, plural, namespace, body: run });
  });
  const now = new Date().toISOString();
  await inParallel(MEMORY_RUNS, 20, (i) =>
    custom.patchNamespacedCustomObjectStatus(
      {
        ...target(i),
        body: {
          status: {
            startTime: now,
            completionTime: now,
            conditions: [{ type: "Succeeded", status: "True", reason: "Succeeded", lastTransitionTime: now }],
          },
        },
      },
      k8s.setHeaderOptions("Content-Type", k8s.PatchStrategy.MergePatch),
    ),
  );
  console.error("[bench] memory: starting a compiled replica to list them...");
  const replica = new ControllerProcess({
    kubeconfig: cluster.kubeconfig,
    redisUrl: cluster.redisUrl,
    logDir,
    replicaId: "scale-memory",
    // The webhook configurations the first replica registered point at this port.
    port: empty.port,
    args: ["--log-level=info"],
    entry: compiled,
  });
  const started = performance.now();
  await replica.start();
  // The policies the runs name, once a replica answers the policy webhook (failurePolicy Fail).
  // Not waiting for the policy's status: its reconcile queues behind the runs' first reconciles.
  for (const ns of namespaces)
    await applyPolicy(cluster, ns, { mode: "pipelineruns" }, "default", undefined, { waitObserved: false });
  let peak = 0;
  const read = async () => {
    const m = await replica.metrics();
    const rss = metricSum(m, "tekton_affinity_process_resident_memory_bytes") / 2 ** 20;
    peak = Math.max(peak, rss);
    return {
      rss,
      heap: metricSum(m, "tekton_affinity_nodejs_heap_size_used_bytes") / 2 ** 20,
      runs: metricSum(m, "tekton_affinity_cached_objects", 'kind="PipelineRun"'),
      nodes: metricSum(m, "tekton_affinity_cached_objects", 'kind="Node"'),
      jobs: metricSum(m, "tekton_affinity_job_duration_seconds_count"),
    };
  };
  try {
    await waitFor(
      `the replica to cache ${MEMORY_RUNS} runs and ${nodes} nodes`,
      async () => {
        const r = await read();
        return r.runs >= MEMORY_RUNS && r.nodes >= nodes;
      },
      { timeoutMs: 600_000, intervalMs: 1000 },
    );
    // Idle: the job count stops moving (each run is reconciled once after the list).
    let last = -1;
    await waitFor(
      "the replica's queue to go idle",
      async () => {
        const { jobs } = await read();
        const idle = jobs === last;
        last = jobs;
        return idle;
      },
      { timeoutMs: 1_200_000, intervalMs: 5000 },
    );
    const settled = [];
    for (let i = 0; i < 10; i++) {
      settled.push(await read());
      await new Promise((r) => setTimeout(r, 2000));
    }
    const last10 = settled.at(-1)!;
    return {
      nodes: last10.nodes,
      nodesHeartbeated: have,
      managedRunsCached: last10.runs,
      runsState: "finished",
      controller: "compiled (node dist/src/cli/main.js), as the image runs it",
      secondsToSettle: +((performance.now() - started) / 1000).toFixed(1),
      jobs: last10.jobs,
      controllerRssMb: Math.round(Math.max(...settled.map((s) => s.rss))),
      controllerPeakRssMb: Math.round(peak),
      heapUsedMb: Math.round(last10.heap),
      withoutRuns: { controllerRssMb: emptyRssMb, heapUsedMb: emptyHeapMb },
    };
  } finally {
    await replica.stop();
    for (const ns of namespaces) await cluster.clients.core.deleteNamespace({ name: ns });
  }
}

async function main() {
  const cluster = await LocalCluster.start({ nodes: 3 });
  const sizes = [];
  let memoryResult: Awaited<ReturnType<typeof memory>> | undefined;
  try {
    await installCrd(cluster);
    await cluster.clients.core.createNamespace({ body: { metadata: { name: "tekton-affinity" } } });
    for (const nodes of SIZES) {
      const have = (await cluster.listNodes()).length;
      console.error(`[bench] growing the cluster from ${have} to ${nodes} nodes...`);
      const grown = performance.now();
      if (nodes > have) await cluster.addNodes(nodes - have);
      const growSeconds = +((performance.now() - grown) / 1000).toFixed(1);
      console.error(`[bench] ${nodes} nodes added in ${growSeconds} s`);
      if (RUNS === 0) continue; // memory only
      // A fresh replica per size: its memory is what this size costs, not the last size's garbage.
      const replicas = new ReplicaSet(
        cluster,
        1,
        ["--log-level=info"],
        join(cluster.state.dir, "logs"),
        `scale${nodes}`,
      );
      await replicas.start();
      const sampler = new ControllerSampler(replicas);
      sampler.start();
      const phases: Awaited<ReturnType<typeof phase>>[] = [];
      for (const strategy of STRATEGIES) {
        console.error(`[bench] ${nodes} nodes, ${strategy}: ${RUNS} runs of ${TASKS} tasks...`);
        phases.push(await phase(cluster, nodes, strategy, sampler));
      }
      await sampler.stop();
      await replicas.stop();
      const rate = (s: Strategy) => phases.find((p) => p.strategy === s)!.podsPerSecond;
      sizes.push({
        nodes,
        runs: RUNS,
        tasksPerRun: TASKS,
        secondsToAddNodes: growSeconds,
        podsPerSecond: {
          baseline: rate("baseline"),
          podAffinity: rate("podAffinity"),
          nodePinning: rate("nodePinning"),
        },
        ratioToBaseline: {
          podAffinity: +(rate("podAffinity") / rate("baseline")).toFixed(2),
          nodePinning: +(rate("nodePinning") / rate("baseline")).toFixed(2),
        },
        controllerRssMb: sampler.rssMb,
        managedRunsCached: sampler.managedRunsCached,
        nodesCached: sampler.nodesCached,
        phases,
      });
    }
    if (MEMORY_RUNS > 0) memoryResult = await memory(cluster, Math.max(MEMORY_NODES, SIZES.at(-1)!));
  } finally {
    await cluster.stop();
  }
  if (RUNS === 0) {
    // --runs 0: only the memory measurement, written beside the speed results already on file.
    const onFile = JSON.parse(readFileSync(RESULTS, "utf8")) as Record<string, unknown>;
    writeFileSync(RESULTS, `${JSON.stringify({ ...onFile, memory: memoryResult }, null, 2)}\n`);
    printMemory(memoryResult);
    return;
  }
  // The largest size's figures also sit at the top level, under the names other tooling reads.
  const largest = sizes.at(-1)!;
  const result = {
    benchmark: "scale",
    date: new Date().toISOString(),
    machine: { cpus: cpus().length },
    largestNodesHeld: largest.nodes,
    nodes: largest.nodes,
    runs: largest.runs,
    podsPerSecond: largest.podsPerSecond,
    controllerRssMb: largest.controllerRssMb,
    managedRunsCached: largest.managedRunsCached,
    sizes,
    ...(memoryResult ? { memory: memoryResult } : {}),
  };
  writeFileSync(RESULTS, `${JSON.stringify(result, null, 2)}\n`);
  console.log(`\nscale: task pods scheduled per second, ${RUNS} runs of ${TASKS} tasks per strategy`);
  console.log(
    "nodes   baseline  podAffinity (ratio)  nodePinning (ratio)  bound p99 ms b/pA/nP   ctrl RSS MB  runs cached  nodes cached",
  );
  for (const s of sizes) {
    const p99 = s.phases.map((p) => p.createdToBoundMs.p99).join("/");
    console.log(
      [
        String(s.nodes).padEnd(6),
        String(s.podsPerSecond.baseline).padEnd(8),
        `${s.podsPerSecond.podAffinity} (${s.ratioToBaseline.podAffinity})`.padEnd(19),
        `${s.podsPerSecond.nodePinning} (${s.ratioToBaseline.nodePinning})`.padEnd(19),
        p99.padEnd(22),
        String(s.controllerRssMb).padEnd(11),
        String(s.managedRunsCached).padEnd(11),
        String(s.nodesCached),
      ].join("  "),
    );
  }
  const goal = largest.ratioToBaseline.nodePinning >= 0.9 ? "met" : "MISSED";
  console.log(`goal nodePinning >= 0.9x baseline at ${largest.nodes} nodes: ${goal}`);
  printMemory(memoryResult);
}

function printMemory(m: Awaited<ReturnType<typeof memory>> | undefined): void {
  if (!m) return;
  console.log(
    `\nmemory: ${m.managedRunsCached} finished managed runs and ${m.nodes} nodes cached, compiled replica: ` +
      `RSS ${m.controllerRssMb} MB settled (peak ${m.controllerPeakRssMb} MB while reconciling them), heap used ` +
      `${m.heapUsedMb} MB; the same replica without runs: RSS ${m.withoutRuns.controllerRssMb} MB, heap used ` +
      `${m.withoutRuns.heapUsedMb} MB; goal <= 150 MB: ${m.controllerRssMb <= 150 ? "met" : "MISSED"}`,
  );
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
