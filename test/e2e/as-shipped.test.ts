// The release as operators get it (issue 23): `make release`'s release.yaml, with the image it built by
// digest, installed with `kubectl apply -f` on a real node: 3 replicas and Redis as pods, the webhooks
// reached through the Service (kube-proxy, EndpointSlices), a run whose tasks really run, a rollout
// restart and an upgrade under load with real SIGTERMs, and an uninstall that leaves nothing behind.
//
// One change to what is shipped: the controller's and Redis' pods select the real node, since the
// harness's other nodes are KWOK's, where nothing runs. The load's runs go to the KWOK nodes (their
// policy selects them), so the real node's two cores serve the replicas. The 2 runs/s for
// 2 minutes is kept as a rate; each load lasts as long as its rollout (about a minute), to fit the
// suite's budget.

import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { V1Deployment, V1Pod, V1StatefulSet } from "@kubernetes/client-node";
import * as k8s from "@kubernetes/client-node";
import { expect } from "chai";
import { type BuiltRelease, buildRelease, loadReleaseImage } from "../../scripts/release-build.js";
import { parseObjects, toKubeYaml } from "../../scripts/release-lib.js";
import { MANAGED_LABEL, PLACED_ON_ANNOTATION } from "../../src/api/constants.js";
import { releaseAndUnregister } from "../../src/cli/uninstall-command.js";
import { ensureBinaries } from "../cluster/build.js";
import type { LocalCluster } from "../cluster/cluster.js";
import { StopWaiting, waitFor } from "../cluster/kube.js";
import { sleep } from "../cluster/processes.js";
import { REAL_NODE_LABEL } from "../cluster/real-node.js";
import { e2e, installCrd, waitForGate } from "./env.js";
import {
  applyPolicy,
  createNamespace,
  createRun,
  getRun,
  listRuns,
  pipelineRun,
  placeholderPods,
  succeeded,
  taskPods,
  waitRunSucceeded,
  writeThenReadRun,
} from "./helpers.js";

const NAMESPACE = "tekton-affinity";
const WEBHOOKS = "tekton-affinity";
const RUNS_PER_SECOND = 2;
const ON_REAL_NODE = { [REAL_NODE_LABEL]: "true" };
const log = (line: string) => console.log(`      [as-shipped] ${line}`);

/** The release with the controller's and Redis' pods on the real node; everything else as shipped. */
function onRealNode(built: BuiltRelease, dir: string): string {
  const objects = parseObjects(readFileSync(built.manifest, "utf8"));
  for (const o of objects) {
    if (o.kind !== "Deployment" && o.kind !== "StatefulSet") continue;
    const pod = (o as unknown as V1Deployment).spec!.template.spec!;
    pod.nodeSelector = { ...pod.nodeSelector, ...ON_REAL_NODE };
  }
  const file = join(dir, "installed.yaml");
  writeFileSync(file, toKubeYaml(objects));
  return file;
}

async function controllerPods(cluster: LocalCluster): Promise<V1Pod[]> {
  const list = await cluster.clients.core.listNamespacedPod({
    namespace: NAMESPACE,
    labelSelector: "app.kubernetes.io/component=controller",
  });
  return list.items;
}

/** Waits for the Deployment's rollout to finish: every replica of the current template Ready. */
async function rolledOut(cluster: LocalCluster): Promise<void> {
  await cluster.kubectlRun(
    "-n",
    NAMESPACE,
    "rollout",
    "status",
    "deployment/tekton-affinity",
    "--timeout=300s",
  );
}

/**
 * Creates runs at RUNS_PER_SECOND (on the clock, not one after another) while `during` runs, and a few
 * seconds after it; returns their names.
 */
async function underLoad(cluster: LocalCluster, ns: string, during: () => Promise<void>): Promise<string[]> {
  let done = false;
  const action = during().finally(() => {
    done = true;
  });
  const start = Date.now();
  const creates: Promise<string>[] = [];
  let stopAt = Number.POSITIVE_INFINITY;
  for (let i = 0; Date.now() < stopAt; i++) {
    if (done && stopAt === Number.POSITIVE_INFINITY) stopAt = Date.now() + 5_000;
    await sleep(start + (i * 1000) / RUNS_PER_SECOND - Date.now());
    creates.push(
      createRun(cluster, pipelineRun(ns, { tasks: [{ name: "a" }] })).then((r) => r.metadata.name),
    );
  }
  await action;
  return Promise.all(creates);
}

/** Every run succeeded, and each one's task pods ran on the node it was placed on. */
async function expectAllSucceededCoScheduled(
  cluster: LocalCluster,
  ns: string,
  names: string[],
): Promise<void> {
  const runs = await waitFor(
    `${names.length} runs to finish`,
    async () => {
      const items = (await listRuns(cluster, ns)).filter((r) => names.includes(r.metadata.name));
      const failed = items.filter((r) => succeeded(r) === "False");
      if (failed.length) {
        const c = failed[0]!.status?.conditions?.[0];
        throw new StopWaiting(
          `${failed.length} of ${names.length} run(s) failed, e.g. ${failed[0]!.metadata.name}: ${c?.reason}: ${c?.message}`,
        );
      }
      return items.length === names.length && items.every((r) => succeeded(r) === "True") ? items : undefined;
    },
    { timeoutMs: 300_000, intervalMs: 2000 },
  );
  const pods = await cluster.clients.core.listNamespacedPod({
    namespace: ns,
    labelSelector: "tekton.dev/pipelineRun,tekton.dev/taskRun",
  });
  for (const run of runs) {
    expect(run.metadata.labels?.[MANAGED_LABEL], run.metadata.name).to.equal("true");
    const placedOn = run.metadata.annotations?.[PLACED_ON_ANNOTATION];
    const nodes = pods.items
      .filter((p) => p.metadata?.labels?.["tekton.dev/pipelineRun"] === run.metadata.name)
      .map((p) => p.spec?.nodeName);
    expect(nodes.length, `${run.metadata.name}'s task pods`).to.be.above(0);
    expect(new Set([...nodes, placedOn]).size, `${run.metadata.name} on ${placedOn}: ${nodes}`).to.equal(1);
  }
}

describe("as shipped: release.yaml installed, restarted, upgraded and removed on a real node", function () {
  this.timeout(600_000);
  let cluster: LocalCluster;
  let env: Awaited<ReturnType<typeof e2e>>;
  let realNode: string;
  let added = false;
  let dir: string;
  let kubectl: string;
  let installed: string;
  let first: BuiltRelease;
  let loadNs: string;

  before(async function () {
    this.timeout(15 * 60_000);
    env = await e2e();
    cluster = env.cluster;
    const existing = cluster.state.realNodes?.[0];
    if (existing) realNode = existing.name;
    else {
      realNode = (await cluster.addRealNodes(1))[0]!;
      added = true;
    }
    dir = mkdtempSync(join(tmpdir(), "as-shipped-"));
    ({ kubectl } = await ensureBinaries(log));
    // The shared replica and what it made step aside: the release brings its own namespace objects and
    // webhook configurations (the shared ones are in URL mode and cannot also take a Service).
    await env.controller.stop();
    await cluster.kubectlRun(
      "delete",
      "--ignore-not-found",
      `mutatingwebhookconfiguration/${WEBHOOKS}`,
      `validatingwebhookconfiguration/${WEBHOOKS}`,
    );
    await cluster.kubectlRun(
      "delete",
      "namespace",
      NAMESPACE,
      "--ignore-not-found",
      "--wait=true",
      "--timeout=120s",
    );
  });

  // Each step builds on the one before: once one fails, the rest would only repeat its failure.
  let failed = false;
  beforeEach(function () {
    if (failed) this.skip();
  });
  afterEach(function () {
    if (this.currentTest?.state === "failed") failed = true;
  });

  after(async function () {
    this.timeout(300_000);
    // Whatever happened above, leave the cluster as the other test files expect it.
    if (installed)
      await cluster
        .kubectlRun("delete", "-f", installed, "--ignore-not-found", "--wait=true", "--timeout=180s")
        .catch(() => "");
    await cluster
      .kubectlRun("delete", "namespace", NAMESPACE, "--ignore-not-found", "--wait=true", "--timeout=120s")
      .catch(() => "");
    await installCrd(cluster);
    await cluster.clients.core
      .createNamespace({ body: { metadata: { name: NAMESPACE } } })
      .catch(() => undefined);
    await env.controller.start();
    await applyPolicy(cluster, "e2e-gate-probe", { mode: "pipelineruns" }).catch(() => undefined);
    await waitForGate(cluster);
    if (added) await cluster.removeRealNode(realNode);
  });

  it("`kubectl apply -f release.yaml` alone: 3 replicas and Redis Ready as pods, webhooks reached through the Service", async () => {
    first = await buildRelease({
      repository: "localhost/tekton-affinity",
      out: join(dir, "first"),
      kubectl,
      log,
    });
    const node = cluster.state.realNodes!.find((n) => n.name === realNode)!;
    await loadReleaseImage(node, first);
    installed = onRealNode(first, join(dir, "first"));
    await cluster.kubectlRun("apply", "-f", installed);

    await waitFor(
      "the Deployment's 3 replicas and Redis to be Ready",
      async () => {
        const [deployment, redis] = await Promise.all([
          cluster.clients.apps.readNamespacedDeployment({ name: "tekton-affinity", namespace: NAMESPACE }),
          cluster.clients.apps.readNamespacedStatefulSet({
            name: "tekton-affinity-redis",
            namespace: NAMESPACE,
          }),
        ]);
        return deployment.status?.readyReplicas === 3 && (redis as V1StatefulSet).status?.readyReplicas === 1;
      },
      { timeoutMs: 240_000, intervalMs: 2000 },
    );
    const pods = await controllerPods(cluster);
    for (const pod of pods) {
      expect(pod.spec?.nodeName, pod.metadata?.name).to.equal(realNode);
      expect(pod.spec?.containers[0]?.image).to.equal(first.image);
      // The kubelet ran the image the release names: containerd reports it by that digest.
      expect(pod.status?.containerStatuses?.[0]?.imageID, pod.metadata?.name).to.include(first.digest);
    }
    // The init container made Redis' password: no Secret shipped, one now in the cluster.
    const secret = await cluster.clients.core.readNamespacedSecret({
      name: "tekton-affinity-redis",
      namespace: NAMESPACE,
    });
    expect(Buffer.from(secret.data?.password ?? "", "base64").toString()).to.match(/^[0-9a-f]{64}$/);
    // The shipped configurations, with the caBundle a replica patched in.
    const admission = cluster.clients.kc.makeApiClient(k8s.AdmissionregistrationV1Api);
    const mutating = await waitFor("a replica to patch the webhooks' caBundle", async () => {
      const m = await admission.readMutatingWebhookConfiguration({ name: WEBHOOKS });
      return m.webhooks?.every((w) => w.clientConfig.caBundle) ? m : undefined;
    });
    for (const w of mutating.webhooks ?? [])
      expect(w.clientConfig.service, w.name).to.include({
        namespace: NAMESPACE,
        name: "tekton-affinity-webhook",
      });
    await waitForGate(cluster);
    // Prometheus' view: each pod's plain-HTTP metrics port, named `metrics` as the PodMonitor expects.
    const [pod] = await controllerPods(cluster);
    expect(pod!.spec?.containers[0]?.ports?.find((p) => p.name === "metrics")?.containerPort).to.equal(9090);
    const scraped = await (await fetch(`http://${pod!.status?.podIP}:9090/metrics`)).text();
    expect(scraped).to.match(/^tekton_affinity_process_resident_memory_bytes \d+/m);
  });

  it("runs a managed run whose tasks really run and share an RWO workspace, its placeholder on the real node", async () => {
    const ns = await createNamespace(cluster, "shipped-run");
    await applyPolicy(cluster, ns, { mode: "pipelineruns", placeholder: { nodeSelector: ON_REAL_NODE } });
    const run = await createRun(cluster, writeThenReadRun(ns, "echo shipped > $NOTE"));
    await waitRunSucceeded(cluster, ns, run.metadata.name, 180_000);
    const done = await getRun(cluster, ns, run.metadata.name);
    expect(done.metadata.annotations?.[PLACED_ON_ANNOTATION]).to.equal(realNode);
    const pods = await taskPods(cluster, ns, run.metadata.name);
    expect([...pods.values()].map((p) => p.spec?.nodeName)).to.deep.equal([realNode, realNode]);
    const reader = [...pods.entries()].find(([task]) => task === "read")![1];
    expect(await cluster.kubectlRun("logs", "-n", ns, reader.metadata!.name!, "-c", "step-read")).to.include(
      "shipped",
    );
    const placeholders = await placeholderPods(cluster, ns, run.metadata.uid!);
    for (const p of placeholders) expect(p.spec?.nodeName).to.equal(realNode);
  });

  it("`kubectl rollout restart` under 2 runs/s: no run fails, every run co-scheduled", async () => {
    loadNs = await createNamespace(cluster, "shipped-load");
    await applyPolicy(cluster, loadNs, {
      mode: "pipelineruns",
      placeholder: { nodeSelector: { type: "kwok" } },
    });
    const before = new Set((await controllerPods(cluster)).map((p) => p.metadata?.uid));
    const names = await underLoad(cluster, loadNs, async () => {
      await cluster.kubectlRun("-n", NAMESPACE, "rollout", "restart", "deployment/tekton-affinity");
      await rolledOut(cluster);
    });
    log(`${names.length} runs created during the rollout restart`);
    // Rolled out: every replica not terminating is new (the last old one may still be draining).
    const serving = (await controllerPods(cluster)).filter((p) => !p.metadata?.deletionTimestamp);
    expect(serving).to.have.length(3);
    expect(
      serving.filter((p) => before.has(p.metadata?.uid)).map((p) => p.metadata?.name),
      "pods of before the restart still serving",
    ).to.deep.equal([]);
    await expectAllSucceededCoScheduled(cluster, loadNs, names);
  });

  it("upgrade: the release of a second image build applied over the running install under load fails no run", async () => {
    const second = await buildRelease({
      repository: "localhost/tekton-affinity",
      out: join(dir, "second"),
      kubectl,
      labels: { "org.opencontainers.image.revision": `upgrade-${process.pid}` },
      log,
    });
    expect(second.digest).to.not.equal(first.digest);
    await loadReleaseImage(cluster.state.realNodes!.find((n) => n.name === realNode)!, second);
    installed = onRealNode(second, join(dir, "second"));
    const names = await underLoad(cluster, loadNs, async () => {
      await cluster.kubectlRun("apply", "-f", installed);
      await rolledOut(cluster);
    });
    log(`${names.length} runs created during the upgrade`);
    for (const pod of await controllerPods(cluster)) {
      if (pod.metadata?.deletionTimestamp) continue;
      expect(pod.spec?.containers[0]?.image, pod.metadata?.name).to.equal(second.image);
    }
    await expectAllSucceededCoScheduled(cluster, loadNs, names);
  });

  it("uninstall: nothing of ours is left, and a run created afterwards where a policy was succeeds", async () => {
    const report = await releaseAndUnregister(cluster.clients.kc);
    expect(report.webhookConfigurationsDeleted).to.have.length(2);
    await cluster.kubectlRun(
      "delete",
      "-f",
      installed,
      "--ignore-not-found",
      "--wait=true",
      "--timeout=180s",
    );
    installed = "";
    await waitFor(
      `namespace ${NAMESPACE} to be gone`,
      () =>
        cluster.clients.core.readNamespace({ name: NAMESPACE }).then(
          () => false,
          () => true,
        ),
      { timeoutMs: 120_000, intervalMs: 1000 },
    );
    const left = await cluster.kubectlRun(
      "get",
      "mutatingwebhookconfiguration,validatingwebhookconfiguration,crd,clusterrole,clusterrolebinding,priorityclass",
      "-l",
      "app.kubernetes.io/name=tekton-affinity",
      "-o",
      "name",
    );
    const webhooks = await cluster.kubectlRun(
      "get",
      "mutatingwebhookconfiguration,validatingwebhookconfiguration",
      "-o",
      "name",
    );
    expect(left.trim(), "objects of ours left").to.equal("");
    expect(webhooks).to.not.include(`/${WEBHOOKS}`);
    const crds = await cluster.kubectlRun("get", "crd", "-o", "name");
    expect(crds).to.not.include("affinitypolicies.affinity.tekton.dev");

    const run = await createRun(cluster, pipelineRun(loadNs, { tasks: [{ name: "after" }] }));
    const done = await waitRunSucceeded(cluster, loadNs, run.metadata.name);
    expect(done.metadata.labels?.[MANAGED_LABEL], "not managed: nothing of ours is there").to.equal(
      undefined,
    );
  });
});
