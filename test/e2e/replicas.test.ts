// Horizontal scale and faults (issue 5): three replicas as separate OS processes behind one webhook
// address, 300 runs across three namespaces and modes, one replica SIGKILLed and restarted, Redis
// flushed once and restarted once. Every run must complete, no run may be worked by two replicas at
// once outside the instants Redis lost its locks, work must spread, and nothing may be left behind.

import { expect } from "chai";
import { GATED_ANNOTATION, PLACEHOLDER_RUN_UID_LABEL } from "../../src/api/constants.js";
import type { PipelineRun } from "../../src/api/types.js";
import { waitFor } from "../cluster/kube.js";
import { sleep } from "../cluster/processes.js";
import { e2e, TEST_CONTROLLER_ARGS, waitForGate } from "./env.js";
import { applyPolicy, createNamespace, createRun, pipelineRun, RWO_TEMPLATE, succeeded } from "./helpers.js";
import { concurrentWork, ReplicaSet } from "./replicas.js";

const RUNS_PER_NAMESPACE = 100;
const EXTRA_NODES = 17;

describe("three replicas under faults", function () {
  this.timeout(1_200_000);

  it("completes 300 runs with a replica killed and Redis flushed and restarted", async () => {
    const env = await e2e();
    const { cluster } = env;
    await env.controller.stop();
    const replicas = new ReplicaSet(cluster, 3, TEST_CONTROLLER_ARGS);
    const added = await cluster.addNodes(EXTRA_NODES);
    for (let i = 0; i < RUNS_PER_NAMESPACE; i++) await cluster.createVolume(`replicas-pv-${i}`);
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

      // Every run completes.
      const pending = new Set(created.map((r) => `${r.metadata.namespace}/${r.metadata.name}`));
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
              if (succeeded(r) === "False") throw new Error(`run ${ns}/${r.metadata.name} failed`);
              if (succeeded(r) === "True") pending.delete(`${ns}/${r.metadata.name}`);
            }
          }
          return pending.size === 0;
        },
        { timeoutMs: 900_000, intervalMs: 2000 },
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

      // No run was worked by two replicas at once, except jobs that were in flight when Redis lost
      // their locks (flush, restart): those are the lapsed-lock case that resourceVersion fences.
      const records = replicas.jobRecords();
      const lockLoss = faults.filter((f) => f.what !== "SIGKILL replica-1").map((f) => f.at);
      const overlaps = concurrentWork(records).filter(
        ([a, b]) =>
          !lockLoss.some((t) => (a.startedAt <= t && t <= a.endedAt) || (b.startedAt <= t && t <= b.endedAt)),
      );
      expect(overlaps, JSON.stringify(overlaps.slice(0, 3))).to.deep.equal([]);

      // Work spread: each replica within 2x of an even split.
      const perReplica = new Map<string, number>();
      for (const r of records) perReplica.set(r.replica, (perReplica.get(r.replica) ?? 0) + 1);
      const even = records.length / 3;
      console.log(
        `      jobs per replica: ${JSON.stringify(Object.fromEntries(perReplica))} (${records.length} jobs, faults: ${faults.map((f) => f.what).join(", ")})`,
      );
      expect(perReplica.size).to.equal(3);
      for (const [replica, n] of perReplica) {
        expect(n, `${replica} ran ${n} of ${records.length} jobs`).to.be.within(even / 2, even * 2);
      }
    } finally {
      await replicas.stop();
      for (const n of added) await cluster.removeNode(n).catch(() => undefined);
      await env.controller.start();
      await waitForGate(cluster);
    }
  });
});
