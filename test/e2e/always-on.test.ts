// Always on (issue 13). The pods webhook fails closed and Tekton does not retry a refused pod creation,
// so a replica must never answer wrongly or stop answering abruptly:
// - on SIGTERM it fails readiness, keeps answering admissions while endpoints drain, then exits;
// - it is ready only once every informer has listed, and never admits a managed pod without its
//   affinity because its caches were empty.

import { request } from "node:https";
import { join } from "node:path";
import { RbacAuthorizationV1Api } from "@kubernetes/client-node";
import { expect } from "chai";
import { MANAGED_LABEL, PENDING_STATUS } from "../../src/api/constants.js";
import { waitFor } from "../cluster/kube.js";
import { ControllerProcess } from "./controller-process.js";
import { e2e, TEST_CONTROLLER_ARGS } from "./env.js";
import { applyPolicy, createNamespace, createRun, pipelineRun, uniqueName } from "./helpers.js";

function post(port: number, path: string, body: unknown): Promise<{ status: number; body: string }> {
  return new Promise((done, fail) => {
    const req = request(
      {
        host: "127.0.0.1",
        port,
        path,
        method: "POST",
        rejectUnauthorized: false,
        headers: { "content-type": "application/json" },
      },
      (res) => {
        let text = "";
        res.on("data", (c) => (text += c));
        res.on("end", () => done({ status: res.statusCode ?? 0, body: text }));
      },
    );
    req.on("error", fail);
    req.end(JSON.stringify(body));
  });
}

describe("graceful shutdown", function () {
  this.timeout(120_000);

  it("on SIGTERM a replica fails /readyz, keeps answering admissions through the drain, then exits", async () => {
    const { cluster, logDir } = await e2e();
    const ns = await createNamespace(cluster, "drain");
    await applyPolicy(cluster, ns, { mode: "pipelineruns" });
    const drainSeconds = 4;
    // A replica of its own, not registered with the apiserver: the test talks to it directly.
    const replica = new ControllerProcess({
      kubeconfig: cluster.kubeconfig,
      redisUrl: cluster.redisUrl,
      logDir,
      replicaId: "drain",
      manageWebhooks: false,
      args: [
        ...TEST_CONTROLLER_ARGS.filter((a) => !a.startsWith("--shutdown-drain-seconds")),
        `--shutdown-drain-seconds=${drainSeconds}`,
      ],
    });
    await replica.start();
    try {
      const review = {
        apiVersion: "admission.k8s.io/v1",
        kind: "AdmissionReview",
        request: {
          uid: "drain-1",
          kind: { group: "tekton.dev", version: "v1", kind: "PipelineRun" },
          namespace: ns,
          operation: "CREATE",
          object: pipelineRun(ns, { tasks: [{ name: "a" }] }),
        },
      };
      const gated = (text: string) => {
        const r = JSON.parse(text) as { response?: { allowed?: boolean; patch?: string } };
        return (
          r.response?.allowed === true &&
          Buffer.from(r.response.patch ?? "", "base64")
            .toString()
            .includes(PENDING_STATUS)
        );
      };
      // The check can fail: before SIGTERM the replica gates the run (its cache has the policy).
      await waitFor("the replica to gate a run", async () =>
        gated((await post(replica.port, "/mutate/pipelineruns", review)).body),
      );

      const signalled = Date.now();
      process.kill(-replica.pid, "SIGTERM");
      await waitFor("/readyz to fail", async () => !(await replica.ready()), { timeoutMs: 5000 });
      expect(await replica.get("/readyz")).to.equal("shutting down");
      // Still answering, and answering right, during the drain.
      for (let i = 0; i < 5; i++) {
        const answer = await post(replica.port, "/mutate/pipelineruns", {
          ...review,
          request: { ...review.request, uid: `drain-${i + 2}` },
        });
        expect(answer.status).to.equal(200);
        expect(gated(answer.body)).to.equal(true);
        await new Promise((r) => setTimeout(r, 300));
      }
      expect(replica.alive).to.equal(true);
      await waitFor("the replica to exit", async () => !replica.alive, {
        timeoutMs: 30_000,
        intervalMs: 100,
      });
      expect(Date.now() - signalled).to.be.at.least(drainSeconds * 1000);
    } finally {
      await replica.stop();
    }
  });
});

describe("honest readiness", function () {
  this.timeout(180_000);

  it("a replica whose informer lists are refused stays unready, refuses managed pods it cannot look up, and becomes ready once they succeed", async () => {
    const { cluster, logDir } = await e2e();
    const ns = await createNamespace(cluster, "unready");
    await applyPolicy(cluster, ns, { mode: "pipelineruns" });
    const run = await createRun(cluster, pipelineRun(ns, { tasks: [{ name: "a" }] }));

    // A user that may read the webhook certificate but list nothing: every list answers 403.
    const user = uniqueName("unready-replica");
    const rbac = (kind: string, name: string) => ({ kind, name, apiGroup: "rbac.authorization.k8s.io" });
    const rbacApi = cluster.clients.kc.makeApiClient(RbacAuthorizationV1Api);
    await rbacApi.createNamespacedRole({
      namespace: "tekton-affinity",
      body: {
        metadata: { name: user },
        rules: [{ apiGroups: [""], resources: ["secrets"], verbs: ["get", "create", "update"] }],
      },
    });
    await rbacApi.createNamespacedRoleBinding({
      namespace: "tekton-affinity",
      body: {
        metadata: { name: user },
        roleRef: rbac("Role", user),
        subjects: [{ kind: "User", name: user, apiGroup: "rbac.authorization.k8s.io" }],
      },
    });
    const replica = new ControllerProcess({
      kubeconfig: cluster.writeImpersonatingKubeconfig(join(logDir, `${user}.kubeconfig`), user),
      redisUrl: cluster.redisUrl,
      logDir,
      replicaId: user,
      manageWebhooks: false,
      args: TEST_CONTROLLER_ARGS,
      waitReady: false,
    });
    await replica.start();
    try {
      const podReview = {
        apiVersion: "admission.k8s.io/v1",
        kind: "AdmissionReview",
        request: {
          uid: "unready-pod",
          kind: { group: "", version: "v1", kind: "Pod" },
          namespace: ns,
          operation: "CREATE",
          object: {
            metadata: {
              name: `${run.metadata.name}-a-pod`,
              namespace: ns,
              labels: { "tekton.dev/pipelineRun": run.metadata.name, [MANAGED_LABEL]: "true" },
            },
            spec: { containers: [{ name: "step-work", image: "busybox" }] },
          },
        },
      };
      for (let i = 0; i < 4; i++) {
        expect(await replica.ready()).to.equal(false);
        expect(await replica.get("/readyz")).to.equal("informer caches not synced");
        await new Promise((r) => setTimeout(r, 1000));
      }
      const refused = JSON.parse((await post(replica.port, "/mutate/pods", podReview)).body) as {
        response: { allowed: boolean; status?: { message?: string } };
      };
      expect(refused.response.allowed).to.equal(false);
      expect(refused.response.status?.message).to.contain("without its co-scheduling affinity");

      // The lists succeed from now on: the replica becomes ready by itself and steers the pod.
      await rbacApi.createClusterRoleBinding({
        body: {
          metadata: { name: user },
          roleRef: rbac("ClusterRole", "cluster-admin"),
          subjects: [{ kind: "User", name: user, apiGroup: "rbac.authorization.k8s.io" }],
        },
      });
      await waitFor("the replica to become ready", () => replica.ready(), {
        timeoutMs: 90_000,
        intervalMs: 500,
      });
      const steered = JSON.parse((await post(replica.port, "/mutate/pods", podReview)).body) as {
        response: { allowed: boolean; patch?: string };
      };
      expect(steered.response.allowed).to.equal(true);
      expect(Buffer.from(steered.response.patch ?? "", "base64").toString()).to.contain("podAffinity");
    } finally {
      await replica.stop();
      await rbacApi.deleteClusterRoleBinding({ name: user }).catch(() => undefined);
    }
  });
});
