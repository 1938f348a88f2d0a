// Horizontal scale and faults (issue 5): three replicas as separate OS processes behind one webhook
// address, 300 runs across three namespaces and modes, one replica SIGKILLed and restarted, Redis
// flushed once and restarted once. Every run must complete, no run may be worked by two replicas at
// once outside the instants Redis lost its locks, work must spread, and nothing may be left behind.

import { expect } from "chai";
import { GATED_ANNOTATION, PLACEHOLDER_RUN_UID_LABEL } from "../../src/api/constants.js";
import type { PipelineRun, PipelineRunCondition } from "../../src/api/types.js";
import type { LocalCluster } from "../cluster/cluster.js";
import { StopWaiting, waitFor } from "../cluster/kube.js";
import { sleep } from "../cluster/processes.js";
import { e2e, TEST_CONTROLLER_ARGS, waitForGate } from "./env.js";
import { applyPolicy, createNamespace, createRun, pipelineRun, RWO_TEMPLATE, succeeded } from "./helpers.js";
import { concurrentWork, ReplicaSet } from "./replicas.js";

const RUNS_PER_NAMESPACE = 100;
const EXTRA_NODES = 17;

/** The controller's object-lock and BullMQ lock duration (WorkQueue's default). */
const LOCK_DURATION_MS = 15_000;
/** The longest fault below: Redis down for 2 s during its restart. */
const FAULT_DOWNTIME_MS = 2_000;

describe("three replicas under faults", function () {
  this.timeout(1_200_000);

  it("completes 300 runs with a replica killed and Redis flushed and restarted", async () => {
    const env = await e2e();
    const { cluster } = env;
    await env.controller.stop();
    const replicas = new ReplicaSet(cluster, 3, TEST_CONTROLLER_ARGS);
    const added = await cluster.addNodes(EXTRA_NODES);
    // Named per test run: volumes whose claims are still terminating outlive a cleanup.
    const volumes = Array.from({ length: RUNS_PER_NAMESPACE }, (_, i) => `replicas-pv-${Date.now()}-${i}`);
    for (const name of volumes) await cluster.createVolume(name);
    const faults: { at: number; what: string }[] = [];
    try {
      await replicas.start();
      const namespaces = {
        runs: await createNamespace(cluster, "scale-runs"),
        ws: await createNamespace(cluster, "scale-ws"),
        iso: await createNamespace(cluster, "scale-iso"),
      };
      await applyPolicy(cluster, namespaces.runs, { mode: "pipelineruns" });
      await applyPolicy(cluster, namespaces.ws, { mode: "workspaces" });
      await applyPolicy(cluster, namespaces.iso, {
        mode: "isolate-pipelinerun",
        isolation: { scope: "namespace" },
      });

      const shapes = [
        { ns: namespaces.runs, shape: { tasks: [{ name: "a" }, { name: "b", runAfter: ["a"] }] } },
        {
          ns: namespaces.ws,
          shape: {
            workspaces: { src: RWO_TEMPLATE },
            annotations: { "tekton.dev/auto-cleanup-pvc": "true" },
            tasks: [{ name: "a", workspaces: ["src"] }],
          },
        },
        { ns: namespaces.iso, shape: { tasks: [{ name: "a" }] } },
      ];
      const created: PipelineRun[] = [];
      const total = RUNS_PER_NAMESPACE * shapes.length;
      for (let i = 0; i < total; i++) {
        const { ns, shape } = shapes[i % shapes.length]!;
        created.push(await createRun(cluster, pipelineRun(ns, shape)));
        if (i === Math.floor(total / 3)) {
          faults.push({ at: Date.now(), what: "SIGKILL replica-1" });
          await replicas.replicas[1]!.kill();
          void sleep(3000).then(() => replicas.replicas[1]!.start());
        }
        if (i === Math.floor(total / 2)) {
          faults.push({ at: Date.now(), what: "FLUSHALL" });
          await cluster.flushRedis();
        }
        if (i === Math.floor((total * 3) / 4)) {
          faults.push({ at: Date.now(), what: "redis restart" });
          await cluster.restartRedis(2000);
        }
      }

      // Every run completes. One failure is not ours to prevent: a pod admission in flight on the replica
      // at the instant it is SIGKILLed gets EOF, and Tekton fails that TaskRun (PodCreationFailed) rather
      // than retry. Such a run is a crash casualty only with exactly that message, at the kill.
      const killAt = faults.find((f) => f.what === "SIGKILL replica-1")!.at;
      const pending = new Set(created.map((r) => `${r.metadata.namespace}/${r.metadata.name}`));
      const casualties: string[] = [];
      await waitFor(
        `${total} runs to succeed`,
        async () => {
          for (const ns of Object.values(namespaces)) {
            const list = (await cluster.clients.custom.listNamespacedCustomObject({
              group: "tekton.dev",
              version: "v1",
              plural: "pipelineruns",
              namespace: ns,
            })) as { items: PipelineRun[] };
            for (const r of list.items) {
              const key = `${ns}/${r.metadata.name}`;
              if (!pending.has(key)) continue;
              if (succeeded(r) === "True") pending.delete(key);
              if (succeeded(r) !== "False") continue;
              const why = await crashCasualty(cluster, ns, r.metadata.name!, killAt);
              if (why === true) {
                casualties.push(key);
                pending.delete(key);
              } else throw new StopWaiting(`run ${key} failed: ${why}`);
            }
          }
          return pending.size === 0;
        },
        { timeoutMs: 900_000, intervalMs: 2000 },
      );
      // The balancer saw which requests the killed replica left unanswered: no more runs may fail than that.
      const killedPort = replicas.replicas[1]!.port;
      const inFlight = replicas.balancer.cut.filter(
        (c) => c.port === killedPort && c.at >= killAt && c.at <= killAt + 5000,
      ).length;
      console.log(
        `      SIGKILL: ${inFlight} admission(s) in flight on the killed replica, ${casualties.length} run(s) failed${casualties.length ? ` (${casualties.join(", ")})` : ""}`,
      );
      expect(casualties.length, "runs failed by the SIGKILL, against admissions it cut off").to.be.at.most(
        inFlight,
      );

      // Nothing left behind: no gate, no placeholder, no queued work.
      await waitFor(
        "no placeholders and no gated runs left",
        async () => {
          for (const ns of Object.values(namespaces)) {
            const sets = await cluster.clients.apps.listNamespacedStatefulSet({
              namespace: ns,
              labelSelector: PLACEHOLDER_RUN_UID_LABEL,
            });
            if (sets.items.length) return false;
            const list = (await cluster.clients.custom.listNamespacedCustomObject({
              group: "tekton.dev",
              version: "v1",
              plural: "pipelineruns",
              namespace: ns,
            })) as { items: PipelineRun[] };
            if (list.items.some((r) => r.metadata.annotations?.[GATED_ANNOTATION])) return false;
          }
          return true;
        },
        { timeoutMs: 120_000, intervalMs: 2000 },
      );
      const { Queue } = await import("bullmq");
      const queue = new Queue("reconcile", {
        connection: { host: "127.0.0.1", port: cluster.state.redisPort },
        prefix: "tekton-affinity",
      });
      try {
        await waitFor(
          "an empty queue",
          async () => {
            const c = await queue.getJobCounts("waiting", "active", "delayed", "prioritized");
            return Object.values(c).every((n) => n === 0);
          },
          { timeoutMs: 120_000, intervalMs: 1000 },
        );
      } finally {
        await queue.close();
      }

      // No run was worked by two replicas at once, except where one of the two jobs lost its lock while
      // it ran because of a fault (Redis flushed or restarted under it, within one lock duration): the
      // lapsed-lock case that resourceVersion fences. A job is only excused by its own record and a fault
      // next to it, so an overlap of two jobs that both held the lock, or a lock that lapsed with no
      // fault near, fails.
      const records = replicas.jobRecords();
      const inFaultWindow = (start: number, end: number) =>
        faults.some((f) => f.at <= end && start <= f.at + LOCK_DURATION_MS + FAULT_DOWNTIME_MS);
      const overlaps = concurrentWork(records).filter(
        ([a, b]) =>
          !((a.lockLost || b.lockLost) && inFaultWindow(Math.max(a.startedAt, b.startedAt), a.endedAt)),
      );
      const lapsed = records.filter((r) => r.lockLost);
      const lapsedOutside = lapsed.filter((r) => !inFaultWindow(r.startedAt, r.endedAt));
      expect(overlaps, JSON.stringify(overlaps.slice(0, 3))).to.deep.equal([]);
      expect(lapsedOutside, JSON.stringify(lapsedOutside.slice(0, 3))).to.deep.equal([]);

      // Work spread: each replica within 2x of an even split.
      const perReplica = new Map<string, number>();
      for (const r of records) perReplica.set(r.replica, (perReplica.get(r.replica) ?? 0) + 1);
      const even = records.length / 3;
      console.log(
        `      jobs per replica: ${JSON.stringify(Object.fromEntries(perReplica))} (${records.length} jobs, ${lapsed.length} with a lapsed lock, ${lapsedOutside.length} of them outside a fault window, faults: ${faults.map((f) => f.what).join(", ")})`,
      );
      expect(perReplica.size).to.equal(3);
      for (const [replica, n] of perReplica) {
        expect(n, `${replica} ran ${n} of ${records.length} jobs`).to.be.within(even / 2, even * 2);
      }
    } finally {
      await replicas.stop();
      for (const n of added) await cluster.removeNode(n).catch(() => undefined);
      // No provisioner deletes released volumes here; drop ours so a long-lived dev cluster
      // (`npm run cluster -- up`) does not collect them.
      for (const name of volumes) {
        await cluster.clients.core.deletePersistentVolume({ name }).catch(() => undefined);
      }
      await env.controller.start();
      await waitForGate(cluster);
    }
  });
});

/** The part of a tekton.dev/v1 TaskRun read here: its conditions have a PipelineRun's shape. */
interface TaskRunStatus {
  status?: { conditions?: PipelineRunCondition[] };
}

/**
 * True if every failed TaskRun of the run failed creating its pod because our pods webhook connection
 * dropped (EOF, reset) within seconds of the SIGKILL; otherwise what did fail, for the error message.
 */
async function crashCasualty(
  cluster: LocalCluster,
  namespace: string,
  run: string,
  killAt: number,
): Promise<true | string> {
  const list = (await cluster.clients.custom.listNamespacedCustomObject({
    group: "tekton.dev",
    version: "v1",
    plural: "taskruns",
    namespace,
    labelSelector: `tekton.dev/pipelineRun=${run}`,
  })) as { items: TaskRunStatus[] };
  const failed = list.items.flatMap((t) =>
    (t.status?.conditions ?? []).filter((c) => c.type === "Succeeded" && c.status === "False"),
  );
  if (!failed.length) return "no failed TaskRun";
  for (const c of failed) {
    const at = Date.parse(c.lastTransitionTime ?? "");
    const dropped = /failed calling webhook "pods\.affinity\.tekton\.dev".*(EOF|connection reset by peer)/;
    // lastTransitionTime has whole seconds: allow for that before the kill.
    const atKill = at >= killAt - 2000 && at <= killAt + 10_000;
    if (c.reason !== "PodCreationFailed" || !dropped.test(c.message ?? "") || !atKill) {
      return `${c.reason}: ${c.message} at ${c.lastTransitionTime} (SIGKILL at ${new Date(killAt).toISOString()})`;
    }
  }
  return true;
}
