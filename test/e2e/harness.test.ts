// The local control plane itself: real components, fake nodes, modelled pod run times, node and
// Redis fault helpers. Everything else is proven on top of this.

import { expect } from "chai";
import { waitFor } from "../cluster/kube.js";
import { VERSIONS } from "../cluster/versions.js";
import { e2e } from "./env.js";
import { createNamespace, createRun, pipelineRun, taskPods, waitRunSucceeded } from "./helpers.js";

describe("local cluster harness", function () {
  this.timeout(180_000);

  it("serves the pinned Kubernetes version from real binaries", async () => {
    const { cluster } = await e2e();
    const version = JSON.parse(await cluster.kubectlRun("version", "-o", "json")) as {
      serverVersion: { gitVersion: string };
      clientVersion: { gitVersion: string };
    };
    expect(version.serverVersion.gitVersion).to.equal(VERSIONS.kubernetes);
    expect(version.clientVersion.gitVersion).to.equal(VERSIONS.kubernetes);
  });

  it("has fake nodes with hostname and zone labels, all Ready", async () => {
    const { cluster } = await e2e();
    const nodes = await cluster.listNodes();
    expect(nodes.length).to.be.at.least(3);
    for (const n of nodes) {
      expect(n.metadata?.labels?.["kubernetes.io/hostname"]).to.equal(n.metadata?.name);
      expect(n.metadata?.labels?.["topology.kubernetes.io/zone"]).to.match(/^zone-[abc]$/);
      expect(n.status?.conditions?.find((c) => c.type === "Ready")?.status).to.equal("True");
    }
  });

  it("runs a real Tekton PipelineRun whose task pods take their modelled time", async () => {
    const { cluster } = await e2e();
    const ns = await createNamespace(cluster, "harness");
    const run = await createRun(
      cluster,
      pipelineRun(ns, {
        tasks: [
          { name: "slow", seconds: 4 },
          { name: "after", runAfter: ["slow"] },
        ],
      }),
    );
    await waitRunSucceeded(cluster, ns, run.metadata.name);
    const pods = await taskPods(cluster, ns, run.metadata.name);
    const slow = pods.get("slow")!;
    const state = slow.status?.containerStatuses?.[0]?.state?.terminated;
    expect(slow.status?.phase).to.equal("Succeeded");
    expect(state?.exitCode).to.equal(0);
    const ranMs = new Date(state!.finishedAt!).getTime() - new Date(slow.status!.startTime!).getTime();
    expect(ranMs).to.be.at.least(3000);
    expect(pods.get("after")?.status?.phase).to.equal("Succeeded");
  });

  it("schedules a StatefulSet's pod onto a KWOK node, where it goes Running", async () => {
    const { cluster } = await e2e();
    const ns = await createNamespace(cluster, "sts");
    await cluster.clients.apps.createNamespacedStatefulSet({
      namespace: ns,
      body: {
        metadata: { name: "web" },
        spec: {
          serviceName: "web",
          replicas: 1,
          selector: { matchLabels: { app: "web" } },
          template: {
            metadata: { labels: { app: "web" } },
            spec: { containers: [{ name: "c", image: "pause" }] },
          },
        },
      },
    });
    const pod = await waitFor("web-0 Running", async () => {
      const p = await cluster.clients.core.readNamespacedPod({ name: "web-0", namespace: ns });
      return p.status?.phase === "Running" ? p : undefined;
    });
    expect(pod.spec?.nodeName).to.match(/^kwok-node-/);
  });

  it("really evaluates required inter-pod affinity in the scheduler", async () => {
    const { cluster } = await e2e();
    const ns = await createNamespace(cluster, "affinity");
    const pod = (name: string, labels: Record<string, string>, spec: object = {}) =>
      cluster.clients.core.createNamespacedPod({
        namespace: ns,
        body: { metadata: { name, labels }, spec: { containers: [{ name: "c", image: "pause" }], ...spec } },
      });
    const running = (name: string) =>
      waitFor(`${name} scheduled`, async () => {
        const p = await cluster.clients.core.readNamespacedPod({ name, namespace: ns });
        return p.spec?.nodeName;
      });
    // Pin the target to the last node, so that following it cannot be the scheduler's default choice.
    const nodes = (await cluster.listNodes()).map((n) => n.metadata!.name!).sort();
    await pod("target", { role: "target" }, { nodeName: nodes.at(-1) });
    const targetNode = await running("target");
    for (let i = 0; i < 3; i++) {
      await pod(
        `follower-${i}`,
        {},
        {
          affinity: {
            podAffinity: {
              requiredDuringSchedulingIgnoredDuringExecution: [
                { labelSelector: { matchLabels: { role: "target" } }, topologyKey: "kubernetes.io/hostname" },
              ],
            },
          },
        },
      );
      expect(await running(`follower-${i}`)).to.equal(targetNode);
    }
  });

  it("says which binary is missing when a component cannot start", async () => {
    const { startProcess } = await import("../cluster/processes.js");
    expect(() => startProcess("redis", ["/nonexistent/redis-server"], "/dev/null")).to.throw(
      /redis-server was not found or is not executable/,
    );
  });

  it("cordons, taints, marks NotReady and restores a node", async () => {
    const { cluster } = await e2e();
    const [name] = await cluster.addNodes(1);
    await cluster.cordon(name!);
    expect((await cluster.clients.core.readNode({ name: name! })).spec?.unschedulable).to.equal(true);
    await cluster.uncordon(name!);
    await cluster.taint(name!, { key: "maintenance", value: "true", effect: "NoSchedule" });
    const tainted = await cluster.clients.core.readNode({ name: name! });
    expect(tainted.spec?.taints?.map((t) => t.key)).to.include("maintenance");
    await cluster.untaint(name!, "maintenance");
    await cluster.setNodeReady(name!, false);
    await cluster.waitNodeReady(name!, false);
    await cluster.setNodeReady(name!, true);
    await cluster.waitNodeReady(name!, true);
    await cluster.removeNode(name!);
    expect((await cluster.listNodes()).map((n) => n.metadata?.name)).not.to.include(name);
  });

  it("restarts and flushes its Redis", async () => {
    const { cluster } = await e2e();
    const { Redis } = await import("ioredis");
    const redis = new Redis(cluster.redisUrl, { maxRetriesPerRequest: null });
    redis.on("error", () => undefined); // refused connections while it restarts are expected
    try {
      await redis.set("harness-probe", "1");
      await cluster.flushRedis();
      expect(await redis.get("harness-probe")).to.equal(null);
      await redis.set("harness-probe", "2");
      await cluster.restartRedis();
      // A restarted Redis keeps nothing (no persistence), and clients reconnect.
      await waitFor("redis reconnect", async () => (await redis.ping()) === "PONG");
      expect(await redis.get("harness-probe")).to.equal(null);
    } finally {
      redis.disconnect();
    }
  });
});
