// bench/reserve: what `reserve: LargestTask` costs. A run so placed waits for a lowest-priority
// reservation pod, sized to its largest task, to be scheduled before its placeholder is created; its
// larger task may then preempt that reservation. Writes bench/results/reserve.json and prints a table.
//
//   npx tsx bench/reserve.ts [--runs 40] [--nodes 6] [--node-cpu 4]
//
// One local cluster of --nodes fake nodes of --node-cpu cpu each (small, so the reservations take a
// visible share of the room), one controller replica, two phases in one run, each in its own namespace:
//   none         AffinityPolicy {mode: pipelineruns};
//   largestTask  AffinityPolicy {mode: pipelineruns, reserve: LargestTask}.
// Each phase creates --runs PipelineRuns at a steady pace; each run is two sequential tasks whose pods
// request 100m and then 500m cpu (the reservation: 500m). Per phase:
//   released      create -> the run is placed (placed-on annotation set, spec.status no longer
//                 PipelineRunPending), p50 and p99;
//   succeeded     create -> Succeeded=True, p50;
//   task pods/s   task pods scheduled per second, from the phase's first task pod scheduled to its last.
//                 Timed when the pod is seen bound through an informer (ms), since the PodScheduled
//                 condition's lastTransitionTime has one-second resolution; the figure from those
//                 conditions is recorded beside it (taskPodsScheduledPerSecondFromConditions) as a check.
//                 Runs arrive at a set pace, so this is at most about 2 tasks x the pace over the phase:
//                 a lower figure for largestTask means pods waited (for a reservation, or for room);
//   preemptions   (largestTask) reservation pods (named <placeholder>-room-0) the scheduler preempted,
//                 counted from its Preempted events, and the controller's own count
//                 (tekton_affinity_reservation_preemptions_total).
// Timestamps are taken when a change reaches this process (performance.now()). Each phase's namespace
// is deleted, and gone, before the next starts, so no phase pays for another's pods.

import { writeFileSync } from "node:fs";
import { cpus } from "node:os";
import { join, resolve } from "node:path";
import type * as k8s from "@kubernetes/client-node";
import { PENDING_STATUS, PLACED_ON_ANNOTATION } from "../src/api/constants.js";
import type { AffinityPolicySpec, PipelineRun } from "../src/api/types.js";
import { LocalCluster } from "../test/cluster/cluster.js";
import { isNotFound, StopWaiting, waitFor } from "../test/cluster/kube.js";
import { POD_DURATION_ANNOTATION } from "../test/cluster/kwok-stages.js";
import { sleep } from "../test/cluster/processes.js";
import { installCrd } from "../test/e2e/env.js";
import { applyPolicy, createNamespace, createRun, metricSum, uniqueName } from "../test/e2e/helpers.js";
import { ReplicaSet } from "../test/e2e/replicas.js";
import { inform, numberArg, percentile } from "./measure.js";

const RESULTS = resolve(import.meta.dirname, "results", "reserve.json");

const arg = numberArg;
const RUNS = arg("runs", 40);
const NODES = arg("nodes", 6);
const NODE_CPU = arg("node-cpu", 4);
const NODE_MEMORY = "16Gi";
const PACE_PER_SECOND = 4;
/** Two tasks in a row, the second larger: the reservation holds room for it (500m). */
const TASKS = [
  { name: "small", cpu: "100m", seconds: 1 },
  { name: "big", cpu: "500m", seconds: 1 },
];
const TASKRUN_LABEL = "tekton.dev/taskRun"; // only TaskRun pods: not placeholders, not reservations
const RESERVATION_POD_SUFFIX = "-room-0";
const PIPELINERUNS = { group: "tekton.dev", version: "v1", plural: "pipelineruns" };

type PhaseName = "none" | "largestTask";
const PHASES: { name: PhaseName; policy: AffinityPolicySpec }[] = [
  { name: "none", policy: { mode: "pipelineruns" } },
  { name: "largestTask", policy: { mode: "pipelineruns", reserve: "LargestTask" } },
];

/** As test/e2e/reserve.test.ts's inlineRun, without its node pool: the tasks request cpu, and each pod
 * runs for the task's modelled seconds (KWOK). */
function benchRun(ns: string): PipelineRun {
  return {
    apiVersion: "tekton.dev/v1",
    kind: "PipelineRun",
    metadata: { name: uniqueName("reserve"), namespace: ns },
    spec: {
      pipelineSpec: {
        tasks: TASKS.map((t, i) => ({
          name: t.name,
          ...(i ? { runAfter: [TASKS[i - 1]!.name] } : {}),
          taskSpec: {
            metadata: { annotations: { [POD_DURATION_ANNOTATION]: `${t.seconds}s` } },
            // An explicit command: Tekton would otherwise look the image's entrypoint up in a registry.
            steps: [
              {
                name: "work",
                image: "busybox",
                command: ["true"],
                computeResources: { requests: { cpu: t.cpu } },
              },
            ],
          },
        })),
      },
    },
  };
}

/** When each run of a namespace was released and succeeded, and each task pod was first seen bound. */
async function watchPhase(cluster: LocalCluster, ns: string) {
  const releasedAt = new Map<string, number>();
  const succeededAt = new Map<string, number>();
  const failed = new Map<string, string>();
  const boundAt = new Map<string, number>();
  const stopRuns = await inform(
    cluster,
    `/apis/tekton.dev/v1/namespaces/${ns}/pipelineruns`,
    () =>
      cluster.clients.custom.listNamespacedCustomObject({ ...PIPELINERUNS, namespace: ns }) as Promise<
        k8s.KubernetesListObject<PipelineRun & k8s.KubernetesObject>
      >,
    (run) => {
      const name = run.metadata.name!;
      const now = performance.now();
      if (
        !releasedAt.has(name) &&
        run.spec.status !== PENDING_STATUS &&
        run.metadata.annotations?.[PLACED_ON_ANNOTATION]
      ) {
        releasedAt.set(name, now);
      }
      const c = run.status?.conditions?.find((x) => x.type === "Succeeded");
      if (c?.status === "True" && !succeededAt.has(name)) succeededAt.set(name, now);
      if (c?.status === "False") failed.set(name, `${c.reason}: ${c.message}`);
    },
  );
  const stopPods = await inform(
    cluster,
    `/api/v1/namespaces/${ns}/pods`,
    () => cluster.clients.core.listNamespacedPod({ namespace: ns, labelSelector: TASKRUN_LABEL }),
    (pod) => {
      const name = pod.metadata?.name ?? "";
      if (pod.spec?.nodeName && !boundAt.has(name)) boundAt.set(name, performance.now());
    },
    TASKRUN_LABEL,
  );
  const stop = () => Promise.all([stopRuns(), stopPods()]);
  return { releasedAt, succeededAt, failed, boundAt, stop };
}

/** Deletes a namespace and waits for it to be gone, so its cleanup does not load the next phase. */
async function deleteNamespace(cluster: LocalCluster, name: string): Promise<void> {
  await cluster.clients.core.deleteNamespace({ name });
  await waitFor(
    `namespace ${name} to be gone`,
    () => cluster.clients.core.readNamespace({ name }).then(() => false, isNotFound),
    { timeoutMs: 300_000, intervalMs: 1000 },
  ).catch((err) => console.error(`[bench] ${(err as Error).message}; going on`));
}

interface PhaseResult {
  releasedP50Ms: number;
  releasedP99Ms: number;
  succeededP50Ms: number;
  /** Timed through the informer (ms); FromConditions: PodScheduled lastTransitionTime (whole seconds). */
  taskPodsScheduledPerSecond: number;
  taskPodsScheduledPerSecondFromConditions: number;
  taskPods: number;
  /** The pace the runs were really created at (PACE_PER_SECOND unless creates were slow). */
  createdPerSecond: number;
  /** Reservations the controller created in the phase: RUNS with LargestTask, 0 without. */
  reservations: number;
  /** largestTask only: reservation pods preempted, from the scheduler's events and the controller. */
  preemptions?: number;
  preemptionsCountedByController?: number;
}

async function phase(
  cluster: LocalCluster,
  replicas: ReplicaSet,
  p: (typeof PHASES)[number],
): Promise<PhaseResult> {
  const replica = replicas.replicas[0]!;
  const counter = async (name: string) => metricSum(await replica.metrics(), name);
  const reservationsBefore = await counter("tekton_affinity_reservations_total");
  const preemptionsBefore = await counter("tekton_affinity_reservation_preemptions_total");
  const ns = await createNamespace(cluster, `bench-reserve-${p.name.toLowerCase()}`);
  try {
    await applyPolicy(cluster, ns, p.policy);
    const watch = await watchPhase(cluster, ns);

    // A steady pace, by the clock: a slow create does not slow the ones after it.
    const createdAt = new Map<string, number>();
    const start = performance.now();
    for (let i = 0; i < RUNS; i++) {
      const wait = start + (i * 1000) / PACE_PER_SECOND - performance.now();
      if (wait > 0) await sleep(wait);
      const run = benchRun(ns);
      createdAt.set(run.metadata.name, performance.now());
      await createRun(cluster, run);
    }
    const createSeconds = (performance.now() - start) / 1000;
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
    const released = since(watch.releasedAt);
    // A run that succeeded unseen as released was never gated (or its watch was lost): say so.
    if (released.length < RUNS)
      console.error(`[bench] ${p.name}: ${released.length}/${RUNS} runs seen released`);
    const succeeded = since(watch.succeededAt);
    const bound = [...watch.boundAt.values()];
    if (bound.length < RUNS * TASKS.length)
      console.error(`[bench] ${p.name}: ${bound.length} task pods seen bound, not ${RUNS * TASKS.length}`);
    const boundSpan = (Math.max(...bound) - Math.min(...bound)) / 1000;
    // The same span from the PodScheduled conditions (whole seconds). Pods stay after their TaskRun
    // completes, so they can be listed now.
    const pods = await cluster.clients.core.listNamespacedPod({
      namespace: ns,
      labelSelector: TASKRUN_LABEL,
    });
    const scheduledTimes = pods.items.flatMap((pod) => {
      const c = pod.status?.conditions?.find((x) => x.type === "PodScheduled" && x.status === "True");
      return c?.lastTransitionTime ? [new Date(c.lastTransitionTime).getTime()] : [];
    });
    const conditionSpan = (Math.max(...scheduledTimes) - Math.min(...scheduledTimes)) / 1000;
    const perSecond = (count: number, seconds: number) =>
      seconds > 0 ? +(count / seconds).toFixed(2) : Number.NaN;

    const reservations = (await counter("tekton_affinity_reservations_total")) - reservationsBefore;
    const reserving = p.policy.reserve === "LargestTask";
    if (reserving && reservations < RUNS)
      console.error(`[bench] ${p.name}: only ${reservations} reservations for ${RUNS} runs`);
    const result: PhaseResult = {
      releasedP50Ms: Math.round(percentile(released, 50)),
      releasedP99Ms: Math.round(percentile(released, 99)),
      succeededP50Ms: Math.round(percentile(succeeded, 50)),
      taskPodsScheduledPerSecond: perSecond(bound.length, boundSpan),
      taskPodsScheduledPerSecondFromConditions: perSecond(scheduledTimes.length, conditionSpan),
      taskPods: bound.length,
      createdPerSecond: +(RUNS / createSeconds).toFixed(2),
      reservations,
    };
    if (reserving) {
      // One scheduler event per preempted pod; a recreated reservation pod has the same name but a new
      // uid, so pods are counted by uid, as the controller's counter counts them.
      const events = await cluster.clients.core.listNamespacedEvent({
        namespace: ns,
        fieldSelector: "reason=Preempted",
      });
      const victims = new Set(
        events.items
          .filter((e) => e.involvedObject.name?.endsWith(RESERVATION_POD_SUFFIX))
          .map((e) => e.involvedObject.uid ?? e.metadata?.name),
      );
      result.preemptions = victims.size;
      result.preemptionsCountedByController =
        (await counter("tekton_affinity_reservation_preemptions_total")) - preemptionsBefore;
    }
    return result;
  } finally {
    await deleteNamespace(cluster, ns);
  }
}

async function main() {
  for (const [name, value] of [
    ["runs", RUNS],
    ["nodes", NODES],
    ["node-cpu", NODE_CPU],
  ] as const) {
    if (!Number.isInteger(value) || value < 1) throw new Error(`--${name} must be a positive integer`);
  }
  // No default nodes: every node has the bench's shape.
  const cluster = await LocalCluster.start({ nodes: 0 });
  let replicas: ReplicaSet | undefined;
  try {
    await cluster.addNodes(NODES, { cpu: String(NODE_CPU), memory: NODE_MEMORY });
    // The CRD and the reservations' PriorityClass.
    await installCrd(cluster);
    await cluster.clients.core.createNamespace({ body: { metadata: { name: "tekton-affinity" } } });
    replicas = new ReplicaSet(
      cluster,
      1,
      ["--log-level=info"],
      join(cluster.state.dir, "logs"),
      "bench-reserve",
    );
    await replicas.start();
    const phases = {} as Record<PhaseName, PhaseResult>;
    for (const p of PHASES) {
      console.error(`[bench] ${p.name}: ${RUNS} runs at ${PACE_PER_SECOND}/s on ${NODES} nodes...`);
      phases[p.name] = await phase(cluster, replicas, p);
    }
    const result = {
      benchmark: "reserve",
      date: new Date().toISOString(),
      machine: { cpus: cpus().length },
      runs: RUNS,
      nodes: NODES,
      setup: {
        nodeCpu: String(NODE_CPU),
        nodeMemory: NODE_MEMORY,
        pacePerSecond: PACE_PER_SECOND,
        tasks: TASKS,
      },
      phases,
    };
    writeFileSync(RESULTS, `${JSON.stringify(result, null, 2)}\n`);
    const tasks = TASKS.map((t) => `${t.name} ${t.cpu} ${t.seconds}s`).join(", then ");
    console.log(
      `\nreserve: ${RUNS} runs at ${PACE_PER_SECOND}/s per phase (${tasks}), ${NODES} nodes of ${NODE_CPU} cpu`,
    );
    const head =
      "phase|released p50 ms|released p99 ms|succeeded p50 ms|task pods/s|reservations|preemptions";
    const cols = head.split("|");
    const pad = (c: unknown, i: number) => String(c).padEnd(Math.max(cols[i]!.length, 11));
    const row = (cells: unknown[]) => cells.map(pad).join("  ");
    console.log(row(cols));
    for (const p of PHASES) {
      const r = phases[p.name];
      const preempted =
        r.preemptions === undefined ? "-" : `${r.preemptions} (ctrl ${r.preemptionsCountedByController})`;
      const rate = `${r.taskPodsScheduledPerSecond} (${r.taskPodsScheduledPerSecondFromConditions})`;
      console.log(
        row([p.name, r.releasedP50Ms, r.releasedP99Ms, r.succeededP50Ms, rate, r.reservations, preempted]),
      );
    }
    const { none, largestTask } = phases;
    console.log(
      `\nlargestTask / none: released p50 ${(largestTask.releasedP50Ms / none.releasedP50Ms).toFixed(2)}x, ` +
        `task pods/s ${(largestTask.taskPodsScheduledPerSecond / none.taskPodsScheduledPerSecond).toFixed(2)}x` +
        ` (task pods/s in brackets: from PodScheduled conditions, 1 s resolution; results in ${RESULTS})`,
    );
  } finally {
    await replicas?.stop();
    await cluster.stop();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
