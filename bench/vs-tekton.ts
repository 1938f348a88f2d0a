// bench/vs-tekton: our co-scheduling beside Tekton's built-in affinity assistant, in one cluster and one
// run, so the figures compare as ratios. Writes bench/results/vs-tekton.json and prints a table.
//
//   npx tsx bench/vs-tekton.ts [--runs 20]
//
// Each phase creates RUNS PipelineRuns at once in a fresh namespace; each run shares one RWO
// volumeClaimTemplate workspace across three sequential tasks (the affinity assistant's use case).
//   floor    coschedule "disabled", no policy, no controller: the cost of co-scheduling nothing;
//   builtin  coschedule "workspaces" (Tekton's default): Tekton's affinity assistant;
//   ours     coschedule "disabled", AffinityPolicy {mode: workspaces}, one controller replica.
// `ours` runs last: a stopped replica leaves its webhook configuration registered, which would get in the
// way of the phases after it.

import { writeFileSync } from "node:fs";
import { cpus } from "node:os";
import { resolve } from "node:path";
import type * as k8s from "@kubernetes/client-node";
import { PLACEHOLDER_LABEL } from "../src/api/constants.js";
import type { PipelineRun } from "../src/api/types.js";
import { LocalCluster } from "../test/cluster/cluster.js";
import { isNotFound, StopWaiting, waitFor } from "../test/cluster/kube.js";
import { TEKTON_NAMESPACE } from "../test/cluster/tekton.js";
import { installCrd } from "../test/e2e/env.js";
import { applyPolicy, createNamespace, createRun, pipelineRun, RWO_TEMPLATE } from "../test/e2e/helpers.js";
import { ReplicaSet } from "../test/e2e/replicas.js";
import { inform, percentile } from "./measure.js";

const RESULTS = resolve(import.meta.dirname, "results", "vs-tekton.json");
const runsArg = process.argv.indexOf("--runs");
const RUNS = runsArg > 0 ? Number(process.argv[runsArg + 1]) : 20;
const CONCURRENT_CREATES = 5;
const RUN_LABEL = "tekton.dev/pipelineRun";
const TASKRUN_LABEL = "tekton.dev/taskRun"; // only TaskRun pods: not Tekton's assistant, not our placeholders
const COMPONENT_LABEL = "app.kubernetes.io/component";
const PIPELINERUNS = { group: "tekton.dev", version: "v1", plural: "pipelineruns" };
const NOTES = [
  "The local cluster models volume attachment (docs/local-cluster.md): a ReadWriteOnce volume is attached to one node at a time, and a pod on another node waits (Multi-Attach) until no running pod there holds it. The tasks here run one after another, so floor's runs still succeed with their pods on several nodes: each task waits only for the previous one's pod to finish.",
  `Figures are from a ${cpus().length}-core machine running the control plane, Tekton, KWOK and the controller together.`,
];

type PhaseName = "floor" | "builtin" | "ours";
const PHASES: { name: PhaseName; coschedule: string; ours: boolean }[] = [
  { name: "floor", coschedule: "disabled", ours: false },
  { name: "builtin", coschedule: "workspaces", ours: false },
  { name: "ours", coschedule: "disabled", ours: true },
];

const benchRun = (ns: string) =>
  pipelineRun(ns, {
    workspaces: { src: RWO_TEMPLATE },
    tasks: [
      { name: "a", workspaces: ["src"] },
      { name: "b", workspaces: ["src"], runAfter: ["a"] },
      { name: "c", workspaces: ["src"], runAfter: ["b"] },
    ],
  });

const patchCoschedule = (cluster: LocalCluster, coschedule: string) =>
  cluster.kubectlRun(
    ...`-n ${TEKTON_NAMESPACE} patch configmap feature-flags --type=merge -p`.split(" "),
    JSON.stringify({ data: { coschedule } }),
  );

/** Sets Tekton's coschedule flag and waits until Tekton acts on it: it watches the ConfigMap, but a phase
 * started before it reacts would measure the wrong thing. Tekton creates a run's assistant StatefulSet
 * before its TaskRuns, so once a probe run's TaskRun pod exists, whether that StatefulSet exists tells
 * which flag is in force. */
async function setCoschedule(cluster: LocalCluster, coschedule: string): Promise<void> {
  await patchCoschedule(cluster, coschedule);
  const ns = await createNamespace(cluster, "vs-tekton-probe");
  try {
    await waitFor(
      `Tekton to apply coschedule: "${coschedule}"`,
      async () => {
        // A long task, so that the run and its assistant are still there when we look.
        const probe = pipelineRun(ns, {
          workspaces: { src: RWO_TEMPLATE },
          tasks: [{ name: "probe", seconds: 120, workspaces: ["src"] }],
        });
        const name = probe.metadata.name;
        await createRun(cluster, probe);
        const labelSelector = `${RUN_LABEL}=${name},${TASKRUN_LABEL}`;
        await waitFor(`probe run ${name}'s TaskRun pod`, async () => {
          return (await cluster.clients.core.listNamespacedPod({ namespace: ns, labelSelector })).items[0];
        });
        // Earlier probes' assistants may still exist: count only this run's (it owns them).
        const sets = await cluster.clients.apps.listNamespacedStatefulSet({ namespace: ns });
        const owned = (s: k8s.V1StatefulSet) => s.metadata?.ownerReferences?.some((o) => o.name === name);
        const assistant = sets.items.some((s) => owned(s) || s.metadata?.labels?.[RUN_LABEL] === name);
        return assistant === (coschedule === "workspaces");
      },
      { timeoutMs: 180_000, intervalMs: 2000 },
    );
  } finally {
    await deleteNamespace(cluster, ns);
  }
}

/** Deletes a namespace and waits for it to be gone, so its cleanup does not load the next phase. */
async function deleteNamespace(cluster: LocalCluster, name: string): Promise<void> {
  await cluster.clients.core.deleteNamespace({ name });
  await waitFor(
    `namespace ${name} to be gone`,
    () => cluster.clients.core.readNamespace({ name }).then(() => false, isNotFound),
    { timeoutMs: 180_000, intervalMs: 1000 },
  ).catch((err) => console.error(`[bench] ${(err as Error).message}; going on`));
}

/** Watches a phase's runs and pods; timestamps are taken when the change reaches us (performance.now()),
 * finer than the conditions' one-second lastTransitionTime. */
async function watchPhase(cluster: LocalCluster, ns: string) {
  const [succeededAt, firstPodAt] = [new Map<string, number>(), new Map<string, number>()];
  const failed = new Map<string, string>();
  const [assistantPods, placeholderPods] = [new Set<string>(), new Set<string>()];
  const stopRuns = await inform(
    cluster,
    `/apis/tekton.dev/v1/namespaces/${ns}/pipelineruns`,
    () =>
      cluster.clients.custom.listNamespacedCustomObject({ ...PIPELINERUNS, namespace: ns }) as Promise<
        k8s.KubernetesListObject<PipelineRun & k8s.KubernetesObject>
      >,
    (run) => {
      const name = run.metadata.name!;
      const c = run.status?.conditions?.find((x) => x.type === "Succeeded");
      if (c?.status === "True" && !succeededAt.has(name)) succeededAt.set(name, performance.now());
      if (c?.status === "False") failed.set(name, `${c.reason}: ${c.message}`);
    },
  );
  const stopPods = await inform(
    cluster,
    `/api/v1/namespaces/${ns}/pods`,
    () => cluster.clients.core.listNamespacedPod({ namespace: ns }),
    (pod) => {
      const labels = pod.metadata?.labels ?? {};
      const name = pod.metadata?.name ?? "";
      if (labels[COMPONENT_LABEL] === "affinity-assistant") assistantPods.add(name);
      if (labels[PLACEHOLDER_LABEL] !== undefined) placeholderPods.add(name);
      const run = labels[RUN_LABEL];
      if (run && labels[TASKRUN_LABEL] && pod.spec?.nodeName && !firstPodAt.has(run)) {
        firstPodAt.set(run, performance.now());
      }
    },
  );
  const stop = () => Promise.all([stopRuns(), stopPods()]);
  return { succeededAt, failed, firstPodAt, assistantPods, placeholderPods, stop };
}

async function phase(cluster: LocalCluster, p: (typeof PHASES)[number]) {
  await setCoschedule(cluster, p.coschedule);
  const ns = await createNamespace(cluster, `vs-tekton-${p.name}`);
  let replicas: ReplicaSet | undefined;
  try {
    if (p.ours) {
      // The policy first: once the gate manages runs in waitForGate's probe namespace, it has listed
      // every policy, this one included, and no run of ours can be admitted ungated.
      // No replica runs yet to observe it (its status is written once one does).
      await applyPolicy(cluster, ns, { mode: "workspaces" }, "default", undefined, { waitObserved: false });
      replicas = new ReplicaSet(cluster, 1, ["--log-level=info"]);
      await replicas.start();
    }
    const watch = await watchPhase(cluster, ns);
    const createdAt = new Map<string, number>();
    let next = 0;
    await Promise.all(
      Array.from({ length: CONCURRENT_CREATES }, async () => {
        while (next++ < RUNS) {
          const run = benchRun(ns);
          createdAt.set(run.metadata.name, performance.now());
          await createRun(cluster, run);
        }
      }),
    );
    await waitFor(
      `${RUNS} ${p.name} runs to succeed`,
      async () => {
        const [name, why] = [...watch.failed][0] ?? [];
        if (name) throw new StopWaiting(`${p.name}: run ${ns}/${name} failed: ${why}`);
        return watch.succeededAt.size >= RUNS;
      },
      { timeoutMs: 900_000, intervalMs: 50 },
    );
    await watch.stop();

    const since = (at: Map<string, number>) =>
      [...createdAt].flatMap(([n, t]) => (at.has(n) ? [at.get(n)! - t] : [])).sort((a, b) => a - b);
    const durations = since(watch.succeededAt);
    const firstPods = since(watch.firstPodAt);
    // Pods stay after their TaskRun completes, so the nodes they ran on can be listed now.
    const pods = await cluster.clients.core.listNamespacedPod({
      namespace: ns,
      labelSelector: TASKRUN_LABEL,
    });
    const nodesOf = new Map<string, Set<string | undefined>>();
    for (const pod of pods.items) {
      const run = pod.metadata?.labels?.[RUN_LABEL] ?? "";
      nodesOf.set(run, (nodesOf.get(run) ?? new Set()).add(pod.spec?.nodeName));
    }
    return {
      p50Ms: Math.round(percentile(durations, 50)),
      p99Ms: Math.round(percentile(durations, 99)),
      makespanMs: Math.round(Math.max(...watch.succeededAt.values()) - Math.min(...createdAt.values())),
      firstPodP50Ms: Math.round(percentile(firstPods, 50)),
      runsOnOneNode: [...createdAt.keys()].filter((n) => nodesOf.get(n)?.size === 1).length,
      // Which co-scheduler was really at work in the phase.
      coschedule: p.coschedule,
      tektonAssistantPods: watch.assistantPods.size,
      placeholderPods: watch.placeholderPods.size,
    };
  } finally {
    await replicas?.stop();
    await deleteNamespace(cluster, ns);
  }
}

async function main() {
  if (!Number.isInteger(RUNS) || RUNS < 1) throw new Error(`--runs must be a positive integer, not ${RUNS}`);
  const cluster = await LocalCluster.start({ nodes: 3 });
  try {
    // Every run claims a PV and the harness pools 200; used ones are not reused. Each phase's probe takes
    // one or a few more.
    for (let i = 0; i < 3 * RUNS + 20 - 200; i++) await cluster.createVolume(`vs-tekton-pv-${i}`);
    await installCrd(cluster);
    await cluster.clients.core.createNamespace({ body: { metadata: { name: "tekton-affinity" } } });
    const phases = {} as Record<PhaseName, Awaited<ReturnType<typeof phase>>>;
    for (const p of PHASES) {
      console.error(`[bench] ${p.name}: ${RUNS} runs, coschedule "${p.coschedule}"...`);
      phases[p.name] = await phase(cluster, p);
    }
    const ratio = phases.ours.p50Ms / phases.builtin.p50Ms;
    const result = {
      benchmark: "vs-tekton",
      date: new Date().toISOString(),
      machine: { cpus: cpus().length },
      notes: NOTES,
      runs: RUNS,
      phases,
      oursOverBuiltinP50: +ratio.toFixed(2),
    };
    writeFileSync(RESULTS, `${JSON.stringify(result, null, 2)}\n`);
    console.log(`\nvs-tekton: ${RUNS} runs at once per phase, 3 tasks in a row on an RWO volume`);
    const head = "phase|p50 ms|p99 ms|makespan ms|first pod p50 ms|on one node|assistant/placeholder pods";
    const cols = head.split("|");
    const pad = (c: unknown, i: number) => String(c).padEnd(Math.max(cols[i]!.length, 8));
    const row = (cells: unknown[]) => cells.map(pad).join("  ");
    console.log(row(cols));
    for (const p of PHASES) {
      const r = phases[p.name];
      const pods = `${r.tektonAssistantPods}/${r.placeholderPods}`;
      const oneNode = `${r.runsOnOneNode}/${RUNS}`;
      console.log(row([p.name, r.p50Ms, r.p99Ms, r.makespanMs, r.firstPodP50Ms, oneNode, pods]));
    }
    for (const note of NOTES) console.log(`note: ${note}`);
    const verdict = ratio <= 1 ? "meets" : "misses";
    console.log(`\nours / builtin p50: ${ratio.toFixed(2)}x (${verdict} the goal <= 1); ${RESULTS}`);
  } finally {
    // Back to what test/cluster/tekton.ts starts Tekton with (matters only if the cluster outlived us).
    await patchCoschedule(cluster, "disabled").catch(() => undefined);
    await cluster.stop();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
