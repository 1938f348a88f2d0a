// Redis trouble (issue 5): webhooks never need Redis; work resumes when it returns; garbage in the queue
// is dropped and counted; a wrong Redis address at start is one clear log line, not a crash.

import { readFileSync } from "node:fs";
import { expect } from "chai";
import { GATED_ANNOTATION, PENDING_STATUS } from "../../src/api/constants.js";
import { waitFor } from "../cluster/kube.js";
import { freePort, sleep } from "../cluster/processes.js";
import { ControllerProcess } from "./controller-process.js";
import { e2e, TEST_CONTROLLER_ARGS } from "./env.js";
import { applyPolicy, createNamespace, createRun, getRun, pipelineRun, waitRunSucceeded } from "./helpers.js";

function metricValue(metrics: string, name: string): number {
  const line = metrics.split("\n").find((l) => l.startsWith(`${name} `));
  return line ? Number(line.split(" ")[1]) : 0;
}

describe("Redis trouble", function () {
  this.timeout(180_000);

  it("keeps gating while Redis is down, longer than maxWait, and places the run once it is back: no run fails for our outage", async () => {
    const { cluster, controller } = await e2e();
    const ns = await createNamespace(cluster, "redis-down");
    // The outage below outlasts maxWait: counted from creation, the run would fail as Redis returns.
    await applyPolicy(cluster, ns, { mode: "pipelineruns", maxWait: "6s" });
    await cluster.stopComponent("redis");
    let name = "";
    try {
      const run = await createRun(cluster, pipelineRun(ns, { tasks: [{ name: "a" }] }));
      name = run.metadata.name;
      // The gate answered from the informer cache alone.
      expect(run.spec.status).to.equal(PENDING_STATUS);
      expect(run.metadata.annotations?.[GATED_ANNOTATION]).to.equal("true");
      // The outage is visible: this replica's queue reports Redis unreachable.
      await waitFor("redis_connected 0", async () =>
        metricValue(await controller.metrics(), "tekton_affinity_redis_connected") === 0 ? true : undefined,
      );
      await sleep(9000);
      expect((await getRun(cluster, ns, name)).spec.status).to.equal(PENDING_STATUS);
    } finally {
      await cluster.startRedis();
    }
    const backAt = Date.now();
    await waitFor(
      "run released after Redis returned",
      async () => (await getRun(cluster, ns, name)).spec.status === undefined,
      {
        timeoutMs: 30_000,
      },
    );
    console.log(`      released ${((Date.now() - backAt) / 1000).toFixed(1)} s after Redis returned (empty)`);
    await waitRunSucceeded(cluster, ns, name);
    expect(metricValue(await controller.metrics(), "tekton_affinity_redis_connected")).to.equal(1);
  });

  it("notices at once when Redis loses its keys without a reconnect (FLUSHALL) and resyncs", async () => {
    const { cluster, controller } = await e2e();
    const metric = 'tekton_affinity_resyncs_total{reason="redis-empty"}';
    const before = metricValue(await controller.metrics(), metric);
    const flushedAt = Date.now();
    await cluster.flushRedis();
    // Well before the next periodic resync (20 s in tests, 300 s by default).
    await waitFor(
      "a redis-empty resync",
      async () => metricValue(await controller.metrics(), metric) > before,
      {
        timeoutMs: 12_000,
      },
    );
    console.log(`      resynced ${((Date.now() - flushedAt) / 1000).toFixed(1)} s after FLUSHALL`);
  });

  it("drops and counts a malformed job without crashing a worker", async () => {
    const { cluster, controller } = await e2e();
    const before = metricValue(await controller.metrics(), "tekton_affinity_malformed_jobs_total");
    const { Queue } = await import("bullmq");
    const queue = new Queue("reconcile", {
      connection: { host: "127.0.0.1", port: cluster.state.redisPort },
      prefix: "tekton-affinity",
    });
    try {
      await queue.add("run", { kind: "run", name: 42 });
      await queue.add("garbage", "not even an object");
    } finally {
      await queue.close();
    }
    await waitFor(
      "malformed jobs counted",
      async () =>
        metricValue(await controller.metrics(), "tekton_affinity_malformed_jobs_total") >= before + 2,
    );
    expect(controller.alive).to.equal(true);
    const log = readFileSync(controller.log, "utf8");
    expect(log).to.contain("dropping malformed job payload");
  });

  it("starts with an unreachable Redis: one clear error line, webhooks serving, queue UI on its admin port", async () => {
    const { cluster } = await e2e();
    const deadRedis = await freePort();
    const adminPort = await freePort();
    const replica = new ControllerProcess({
      kubeconfig: cluster.kubeconfig,
      redisUrl: `redis://127.0.0.1:${deadRedis}`,
      logDir: `${cluster.state.dir}/logs`,
      replicaId: "no-redis",
      manageWebhooks: false,
      args: [...TEST_CONTROLLER_ARGS, `--admin-port=${adminPort}`],
    });
    try {
      await replica.start(); // resolves on /readyz: webhooks serve without Redis
      await sleep(5000); // several reconnect attempts
      expect(replica.alive).to.equal(true);
      const errors = readFileSync(replica.log, "utf8")
        .split("\n")
        .filter((l) => l.includes('"level":50'));
      expect(errors, errors.join("\n")).to.have.length(1);
      expect(errors[0]).to.contain("redis unavailable");
      expect(errors[0]).to.contain(String(deadRedis));
      const ui = await fetch(`http://127.0.0.1:${adminPort}/queues`);
      expect(ui.status).to.equal(200);
    } finally {
      await replica.stop();
    }
  });
});
