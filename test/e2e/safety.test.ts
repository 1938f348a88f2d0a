// "Nothing we install may slow or block a pod that is not part of a managed PipelineRun": with every
// controller replica down (webhook endpoint unreachable), ordinary pods, unmanaged PipelineRuns and
// runs in policy namespaces are still admitted at once.

import { execFile } from "node:child_process";
import { resolve } from "node:path";
import { promisify } from "node:util";
import { expect } from "chai";
import { MANAGED_LABEL, PENDING_STATUS } from "../../src/api/constants.js";
import { waitFor } from "../cluster/kube.js";
import { e2e, waitForGate } from "./env.js";
import {
  applyPolicy,
  createNamespace,
  createRun,
  getRun,
  pipelineRun,
  waitForEvent,
  waitRunSucceeded,
} from "./helpers.js";

const REPO = resolve(import.meta.dirname, "..", "..");

describe("safety for everything we do not manage", function () {
  this.timeout(180_000);

  it("admits ordinary pods and PipelineRuns without delay while the controller is down", async () => {
    const env = await e2e();
    const { cluster } = env;
    const ns = await createNamespace(cluster, "safety");
    await applyPolicy(cluster, ns, { mode: "pipelineruns" });
    await env.controller.kill();
    try {
      const started = Date.now();
      await cluster.clients.core.createNamespacedPod({
        namespace: ns,
        body: { metadata: { name: "ordinary" }, spec: { containers: [{ name: "c", image: "busybox" }] } },
      });
      // The pod webhook's objectSelector keeps this pod away from us entirely: no 5 s webhook timeout.
      expect(Date.now() - started).to.be.below(2000);
      const pod = await cluster.clients.core.readNamespacedPod({ name: "ordinary", namespace: ns });
      expect(pod.spec?.affinity).to.equal(undefined);

      // The gate fails open (failurePolicy Ignore): the run is admitted, ungated and unmanaged.
      const run = await createRun(cluster, pipelineRun(ns, { tasks: [{ name: "a" }] }));
      expect(run.metadata.labels?.[MANAGED_LABEL]).to.equal(undefined);
      expect(run.spec.status).to.equal(undefined);
      await waitRunSucceeded(cluster, ns, run.metadata.name);
    } finally {
      await env.controller.start();
      await waitForGate(cluster);
    }
    // Back up: runs are managed again.
    const managed = await createRun(cluster, pipelineRun(ns, { tasks: [{ name: "a" }] }));
    expect(managed.metadata.labels?.[MANAGED_LABEL]).to.equal("true");
    await waitRunSucceeded(cluster, ns, managed.metadata.name);
    await waitFor(
      "ordinary pod running",
      async () =>
        (await cluster.clients.core.readNamespacedPod({ name: "ordinary", namespace: ns })).status?.phase ===
        "Running",
    );
  });
});

describe("uninstall", function () {
  this.timeout(180_000);

  it("releases every run we gated and removes our webhook configurations, so nothing is stranded", async () => {
    const env = await e2e();
    const { cluster } = env;
    const ns = await createNamespace(cluster, "uninstall");
    // A placeholder that can never be scheduled: the run waits at the gate.
    await applyPolicy(cluster, ns, {
      mode: "pipelineruns",
      placeholder: { nodeSelector: { "no-such": "node" } },
    });
    const gated = await createRun(cluster, pipelineRun(ns, { tasks: [{ name: "a" }] }));
    const usersOwn = await createRun(
      cluster,
      pipelineRun(ns, { tasks: [{ name: "a" }], status: PENDING_STATUS }),
    );
    await waitForEvent(cluster, ns, gated.metadata.name, "Waiting", { type: "Warning" });
    await env.controller.stop();
    try {
      const { stdout } = await promisify(execFile)(
        process.execPath,
        [
          resolve(REPO, "node_modules/tsx/dist/cli.mjs"),
          resolve(REPO, "src/cli/main.ts"),
          "uninstall",
          `--kubeconfig=${cluster.kubeconfig}`,
        ],
        { cwd: REPO },
      );
      expect(stdout).to.contain(`released pipelinerun ${ns}/${gated.metadata.name}`);
      expect(stdout).to.contain("deleted mutatingwebhookconfiguration/tekton-affinity");
      expect((await getRun(cluster, ns, gated.metadata.name)).spec.status).to.equal(undefined);
      expect((await getRun(cluster, ns, usersOwn.metadata.name)).spec.status).to.equal(PENDING_STATUS);
      const configs = await cluster.kubectlRun(
        "get",
        "mutatingwebhookconfigurations,validatingwebhookconfigurations",
        "-o",
        "name",
      );
      expect(configs).not.to.contain("tekton-affinity");
    } finally {
      await env.controller.start();
      await waitForGate(cluster);
    }
  });
});
