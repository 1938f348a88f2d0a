// bench/scale: how fast the scheduler places task pods on a large cluster with each placement strategy,
// beside runs no policy touches, and what one controller replica holds in memory while it does.
// Writes bench/results/scale.json and prints a table.
//
//   npx tsx bench/scale.ts [--nodes 1000,2000] [--runs 500] [--tasks 2]
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

import { writeFileSync } from "node:fs";
import { cpus } from "node:os";
import { join, resolve } from "node:path";
import * as k8s from "@kubernetes/client-node";
import { PLACEHOLDER_LABEL } from "../src/api/constants.js";
import type { AffinityPolicySpec } from "../src/api/types.js";
import { LocalCluster } from "../test/cluster/cluster.js";
import { waitFor } from "../test/cluster/kube.js";
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
import { percentile } from "./measure.js";

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
    const rss = metricSum(m, "tekton_affinity_process_process_resident_memory_bytes") / 2 ** 20;
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

async function main() {
  const cluster = await LocalCluster.start({ nodes: 3 });
  const sizes = [];
  try {
    await installCrd(cluster);
    await cluster.clients.core.createNamespace({ body: { metadata: { name: "tekton-affinity" } } });
    for (const nodes of SIZES) {
      const have = (await cluster.listNodes()).length;
      console.error(`[bench] growing the cluster from ${have} to ${nodes} nodes...`);
      const grown = performance.now();
      if (nodes > have) await cluster.addNodes(nodes - have);
      const growSeconds = +((performance.now() - grown) / 1000).toFixed(1);
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
  } finally {
    await cluster.stop();
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
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
