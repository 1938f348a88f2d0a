// Issue 12: namespace owners do not trust each other. Nothing one namespace creates may keep another
// namespace's runs from being placed, and no run waits forever or silently.

import { expect } from "chai";
import {
  GATED_ANNOTATION,
  MANAGED_LABEL,
  PLACEHOLDER_RUN_UID_LABEL,
  WAITING_ANNOTATION,
} from "../../src/api/constants.js";
import { DEFAULT_ISOLATION_GROUP_LABEL } from "../../src/api/tenancy.js";
import type { PipelineRun } from "../../src/api/types.js";
import { mergePatch } from "../../src/kube/clients.js";
import { tektonClaimName } from "../../src/placement/names.js";
import { MAX_WAIT_EXCEEDED_REASON } from "../../src/reconcilers/pipelinerun.js";
import type { LocalCluster } from "../cluster/cluster.js";
import { isNotFound, waitFor } from "../cluster/kube.js";
import { createDecoys, WebhookFlood } from "./decoys.js";
import { e2e, waitForGate } from "./env.js";
import {
  applyPolicy,
  createNamespace,
  createRun,
  getRun,
  metricSum,
  pipelineRun,
  placeholderPods,
  RWO_TEMPLATE,
  runEvents,
  taskPods,
  uniqueName,
  waitForEvent,
  waitRunSucceeded,
} from "./helpers.js";

async function admissionError(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    const body = (err as { body?: string }).body;
    return body ? ((JSON.parse(body) as { message?: string }).message ?? body) : String(err);
  }
  throw new Error("expected the apiserver to reject the request");
}

/** Node of the run's (single) placeholder pod, once it is scheduled. */
async function placeholderNode(cluster: LocalCluster, ns: string, run: PipelineRun): Promise<string> {
  return waitFor(`placeholder of ${ns}/${run.metadata.name} scheduled`, async () => {
    const pods = await placeholderPods(cluster, ns, run.metadata.uid!);
    return pods[0]?.spec?.nodeName;
  });
}

async function waitingFor(cluster: LocalCluster, ns: string, name: string, pattern: RegExp): Promise<string> {
  return waitFor(`${ns}/${name} waiting-for to match ${pattern}`, async () => {
    const w = (await getRun(cluster, ns, name)).metadata.annotations?.[WAITING_ANNOTATION];
    return w && pattern.test(w) ? w : undefined;
  });
}

async function patchPolicySpec(cluster: LocalCluster, ns: string, spec: object): Promise<void> {
  await cluster.clients.custom.patchNamespacedCustomObject(
    {
      group: "affinity.tekton.dev",
      version: "v1alpha1",
      plural: "affinitypolicies",
      namespace: ns,
      name: "default",
      body: { spec },
    },
    mergePatch(),
  );
}

describe("tenancy: tenants cannot hurt each other", function () {
  this.timeout(240_000);

  it("rejects a topologyKey, priority class or maxWait beyond the operator's bounds, naming field, value and allowed values", async () => {
    const { cluster } = await e2e();
    const ns = await createNamespace(cluster, "evil-admission");
    const os = await admissionError(
      applyPolicy(cluster, ns, { mode: "isolate-pipelinerun", topologyKey: "kubernetes.io/os" }),
    );
    expect(os).to.contain("spec.topologyKey");
    expect(os).to.contain('"kubernetes.io/os" is not allowed');
    expect(os).to.contain('"kubernetes.io/hostname", "topology.kubernetes.io/zone"');
    const priority = await admissionError(
      applyPolicy(cluster, ns, {
        mode: "pipelineruns",
        placeholder: { priorityClassName: "system-cluster-critical" },
      }),
    );
    expect(priority).to.contain("spec.placeholder.priorityClassName");
    expect(priority).to.contain('"system-cluster-critical" is not allowed');
    const wait = await admissionError(applyPolicy(cluster, ns, { mode: "pipelineruns", maxWait: "1000h" }));
    expect(wait).to.contain("spec.maxWait");
    expect(wait).to.contain("ceiling");
    // The checks can pass: an allowed policy is accepted.
    await applyPolicy(cluster, ns, {
      mode: "isolate-pipelinerun",
      topologyKey: "topology.kubernetes.io/zone",
    });
  });

  it("decoy placeholders and another team's isolation do not block a team; isolation groups span only their namespaces", async () => {
    const { cluster } = await e2e();
    const nodes = (await cluster.listNodes())
      .filter((n) => !n.spec?.unschedulable)
      .map((n) => n.metadata!.name!);
    expect(nodes.length).to.equal(3);

    // team-spoof: a pod that looks like a placeholder on every node.
    const spoof = await createNamespace(cluster, "team-spoof");
    for (const [i, node] of nodes.entries()) {
      await cluster.clients.core.createNamespacedPod({
        namespace: spoof,
        body: {
          metadata: {
            name: `decoy-${i}`,
            labels: {
              "app.kubernetes.io/component": "affinity-placeholder",
              [PLACEHOLDER_RUN_UID_LABEL]: "00000000-0000-0000-0000-000000000000",
            },
          },
          spec: { nodeName: node, containers: [{ name: "c", image: "pause" }] },
        },
      });
    }
    // team-evil: cluster-scope isolation with a long run, in no isolation group.
    const evil = await createNamespace(cluster, "team-evil");
    await applyPolicy(cluster, evil, { mode: "isolate-pipelinerun" });
    const evilRun = await createRun(cluster, pipelineRun(evil, { tasks: [{ name: "long", seconds: 60 }] }));
    await placeholderNode(cluster, evil, evilRun);

    // An isolation group of two namespaces, set by the operator (a namespace label).
    const group = uniqueName("builders");
    const [a, b] = [await createNamespace(cluster, "group-a"), await createNamespace(cluster, "group-b")];
    for (const ns of [a, b]) {
      await cluster.kubectlRun("label", "namespace", ns, `${DEFAULT_ISOLATION_GROUP_LABEL}=${group}`);
      await applyPolicy(cluster, ns, { mode: "isolate-pipelinerun" });
    }
    const long = { tasks: [{ name: "long", seconds: 40 }] };
    const groupRuns = [
      await createRun(cluster, pipelineRun(a, long)),
      await createRun(cluster, pipelineRun(a, long)),
      await createRun(cluster, pipelineRun(b, long)),
    ];
    const groupNodes = await Promise.all(
      groupRuns.map((r) => placeholderNode(cluster, r.metadata.namespace, r)),
    );
    // Decoys and team-evil did not stop them, and the group isolates across its two namespaces.
    expect(new Set(groupNodes).size).to.equal(3);
    const fourth = await createRun(cluster, pipelineRun(b, long));
    const why = await waitingFor(cluster, b, fourth.metadata.name, /anti-affinity/);
    expect(why).to.contain("cannot be scheduled");

    // team-good, in no group, is isolated from its own runs only: every node already holds a decoy, a
    // group placeholder and (one of them) team-evil's, and still its run is placed and succeeds.
    const good = await createNamespace(cluster, "team-good");
    await applyPolicy(cluster, good, { mode: "isolate-pipelinerun" });
    const goodRun = await createRun(
      cluster,
      pipelineRun(good, { tasks: [{ name: "a" }, { name: "b", runAfter: ["a"] }] }),
    );
    await waitRunSucceeded(cluster, good, goodRun.metadata.name);
    const pods = await taskPods(cluster, good, goodRun.metadata.name);
    expect(new Set([...pods.values()].map((p) => p.spec?.nodeName)).size).to.equal(1);
    // The fourth group run is still held: the group's isolation is real, not switched off.
    expect(
      (await getRun(cluster, b, fourth.metadata.name)).metadata.annotations?.[GATED_ANNOTATION],
    ).to.equal("true");
  });

  it("a copied run carrying our marks is gated, placed and cleaned up like a new run", async () => {
    const { cluster } = await e2e();
    const ns = await createNamespace(cluster, "copier");
    await applyPolicy(cluster, ns, { mode: "pipelineruns" });
    const original = await createRun(cluster, pipelineRun(ns, { tasks: [{ name: "a" }] }));
    await waitRunSucceeded(cluster, ns, original.metadata.name);
    const done = await waitFor("original cleaned up", async () => {
      const r = await getRun(cluster, ns, original.metadata.name);
      return r.metadata.annotations?.["affinity.tekton.dev/cleaned-up"] === "true" ? r : undefined;
    });
    // What `kubectl get -o yaml | kubectl create -f -` sends, under a new name.
    const copy: PipelineRun = {
      apiVersion: done.apiVersion,
      kind: done.kind,
      metadata: {
        name: uniqueName("copy"),
        namespace: ns,
        labels: done.metadata.labels,
        annotations: { ...done.metadata.annotations, [GATED_ANNOTATION]: "true" },
      },
      spec: done.spec,
    };
    expect(copy.metadata.labels?.[MANAGED_LABEL]).to.equal("true");
    const created = await createRun(cluster, copy);
    expect(created.metadata.annotations?.["affinity.tekton.dev/cleaned-up"]).to.equal(undefined);
    expect(created.metadata.annotations?.["affinity.tekton.dev/placed-on"]).to.equal(undefined);
    expect(created.metadata.annotations?.[GATED_ANNOTATION]).to.equal("true");
    await waitForEvent(cluster, ns, copy.metadata.name, "Placed");
    await waitRunSucceeded(cluster, ns, copy.metadata.name);
    // Cleaned up too: a copied "cleaned-up" mark would have left its placeholder behind.
    await waitFor(
      "copy's placeholders deleted",
      async () =>
        (await placeholderPods(cluster, ns, created.metadata.uid!)).length === 0 &&
        (await cluster.clients.apps.listNamespacedStatefulSet({ namespace: ns })).items.length === 0,
    );
  });
});

describe("tenancy: a hostile tenant's decoys and flood", function () {
  this.timeout(300_000);

  // Issue 24's scenario at a fifth of its size (bench/decoys.ts runs it whole and records the memory):
  // more decoys than one list page, so a fresh replica's relist goes page by page against the apiserver.
  const DECOYS = 600;

  it("decoy StatefulSets with large annotations and a flood of large POSTs keep no other tenant's run from being gated and placed", async () => {
    const env = await e2e();
    const { cluster } = env;
    const tenant = await createNamespace(cluster, "decoys");
    await createDecoys(cluster, tenant, DECOYS, 50 * 1024);
    const cachedSets = async () =>
      metricSum(await env.controller.metrics(), "tekton_affinity_cached_objects", 'kind="StatefulSet"');
    await waitFor(`the replica to cache the ${DECOYS} decoys`, async () => (await cachedSets()) >= DECOYS);
    // A fresh replica lists them all (two pages) and is ready.
    await env.controller.stop();
    await env.controller.start();
    await waitForGate(cluster);
    expect(await cachedSets()).to.be.at.least(DECOYS);

    const neighbour = await createNamespace(cluster, "neighbour");
    await applyPolicy(cluster, neighbour, { mode: "pipelineruns" });
    const refusedBefore = metricSum(
      await env.controller.metrics(),
      "tekton_affinity_webhook_requests_refused_total",
    );
    // From a tenant's address, not the apiserver's.
    const flood = new WebhookFlood({
      port: env.controller.port,
      connections: 16,
      bodyBytes: 4 * 1024 * 1024,
      sourceAddress: "127.0.0.2",
    });
    flood.start();
    try {
      await waitFor("the flood to be under way", async () => flood.tally.requests > 16);
      const runs = [];
      for (let i = 0; i < 3; i++)
        runs.push(
          await createRun(
            cluster,
            pipelineRun(neighbour, { tasks: [{ name: "a" }, { name: "b", runAfter: ["a"] }] }),
          ),
        );
      for (const run of runs) {
        // The gate answered (a run it could not reach would be created ungated, unmanaged).
        expect(run.metadata.labels?.[MANAGED_LABEL], run.metadata.name).to.equal("true");
        expect(run.metadata.annotations?.[GATED_ANNOTATION], run.metadata.name).to.equal("true");
      }
      for (const run of runs) await waitForEvent(cluster, neighbour, run.metadata.name, "Placed");
      for (const run of runs) await waitRunSucceeded(cluster, neighbour, run.metadata.name);
    } finally {
      const tally = await flood.stop();
      console.log(`      flood: ${JSON.stringify(tally)}`);
    }
    // The flood was there, and the server refused what passed its budget, unread.
    expect(flood.tally.requests).to.be.greaterThan(16);
    const refused = metricSum(
      await env.controller.metrics(),
      "tekton_affinity_webhook_requests_refused_total",
    );
    expect(refused - refusedBefore).to.be.greaterThan(0);
    // The decoys' namespace goes with its 30 MB, so later tests do not carry it.
    await cluster.clients.core.deleteNamespace({ name: tenant });
  });
});

describe("bounded, visible waiting", function () {
  this.timeout(180_000);

  it("onMaxWait: Fail ends a run that cannot be placed, with the reason on the run and a Warning event", async () => {
    const { cluster } = await e2e();
    const ns = await createNamespace(cluster, "maxwait-fail");
    await applyPolicy(cluster, ns, {
      mode: "pipelineruns",
      maxWait: "6s",
      placeholder: { nodeSelector: { disktype: "no-such-disk" } },
    });
    const run = await createRun(cluster, pipelineRun(ns, { tasks: [{ name: "a" }] }));
    const failed = await waitFor(
      "the run to fail",
      async () => {
        const r = await getRun(cluster, ns, run.metadata.name);
        const c = r.status?.conditions?.find((x) => x.type === "Succeeded");
        return c?.status === "False" ? c : undefined;
      },
      { timeoutMs: 60_000 },
    );
    expect(failed.reason).to.equal(MAX_WAIT_EXCEEDED_REASON);
    expect(failed.message).to.contain("waited longer than maxWait (6s)");
    expect(failed.message).to.contain("node affinity/selector");
    const event = await waitForEvent(cluster, ns, run.metadata.name, "MaxWaitExceeded", { type: "Warning" });
    expect(event.message).to.contain("maxWait");
    // Tekton keeps it failed (it never started a TaskRun), and its placeholder is cleaned up.
    await waitFor(
      "placeholder deleted",
      async () =>
        (await cluster.clients.apps.listNamespacedStatefulSet({ namespace: ns })).items.length === 0,
    );
    const after = await getRun(cluster, ns, run.metadata.name);
    expect(after.status?.conditions?.find((x) => x.type === "Succeeded")?.reason).to.equal(
      MAX_WAIT_EXCEEDED_REASON,
    );
    expect(
      (after.status as { childReferences?: unknown[] } | undefined)?.childReferences ?? [],
    ).to.deep.equal([]);
  });

  it("onMaxWait: Release starts the run without co-scheduling, with a Warning event", async () => {
    const { cluster } = await e2e();
    const ns = await createNamespace(cluster, "maxwait-release");
    await applyPolicy(cluster, ns, {
      mode: "pipelineruns",
      maxWait: "6s",
      onMaxWait: "Release",
      placeholder: { nodeSelector: { disktype: "no-such-disk" } },
    });
    const run = await createRun(
      cluster,
      pipelineRun(ns, {
        workspaces: { source: RWO_TEMPLATE },
        tasks: [
          { name: "a", workspaces: ["source"] },
          { name: "b", runAfter: ["a"], workspaces: ["source"] },
        ],
      }),
    );
    const event = await waitForEvent(cluster, ns, run.metadata.name, "ReleasedWithoutCoscheduling", {
      type: "Warning",
    });
    expect(event.message).to.contain("starting without co-scheduling");
    await waitRunSucceeded(cluster, ns, run.metadata.name);
    const r = await getRun(cluster, ns, run.metadata.name);
    // No longer managed (its pods skip our webhook), still watched for its clean-up.
    expect(r.metadata.labels?.[MANAGED_LABEL]).to.equal("released");
    for (const pod of (await taskPods(cluster, ns, run.metadata.name)).values()) {
      expect(pod.metadata?.labels?.[MANAGED_LABEL]).to.not.equal("true");
      expect(pod.spec?.affinity?.podAffinity).to.equal(undefined);
    }
    await waitFor(
      "placeholder deleted",
      async () =>
        (await cluster.clients.apps.listNamespacedStatefulSet({ namespace: ns })).items.length === 0,
    );
    // Its template claim follows the clean-up matrix like any run's (pipelineruns mode: deleted), and is
    // gone, not Terminating.
    await waitForEvent(cluster, ns, run.metadata.name, "CleanedUp");
    const claim = tektonClaimName(undefined, "source", run.metadata.uid!);
    const read = await cluster.clients.core
      .readNamespacedPersistentVolumeClaim({ name: claim, namespace: ns })
      .then(
        () => "present",
        (err) => (isNotFound(err) ? "NotFound" : String(err)),
      );
    expect(read).to.equal("NotFound");
  });

  it("a quota that denies the placeholder pod shows on the run at once; raising it lets the run start", async () => {
    const { cluster } = await e2e();
    const ns = await createNamespace(cluster, "quota");
    await cluster.clients.core.createNamespacedResourceQuota({
      namespace: ns,
      body: { metadata: { name: "no-pods" }, spec: { hard: { pods: "0" } } },
    });
    await applyPolicy(cluster, ns, { mode: "pipelineruns" });
    const run = await createRun(cluster, pipelineRun(ns, { tasks: [{ name: "a" }] }));
    // Before this change the run said nothing for 10 s, and then only "see kubectl describe".
    const event = await waitForEvent(cluster, ns, run.metadata.name, "Waiting", {
      type: "Warning",
      timeoutMs: 8000,
    });
    expect(event.message).to.contain("cannot be created");
    expect(event.message).to.contain("exceeded quota");
    await waitingFor(cluster, ns, run.metadata.name, /exceeded quota/);
    await cluster.clients.core.patchNamespacedResourceQuota(
      { name: "no-pods", namespace: ns, body: { spec: { hard: { pods: "10" } } } },
      mergePatch(),
    );
    await waitRunSucceeded(cluster, ns, run.metadata.name);
  });

  it("in a namespace enforcing Pod Security restricted, a run that sets only fsGroup succeeds", async () => {
    const { cluster } = await e2e();
    const ns = await createNamespace(cluster, "restricted");
    await cluster.kubectlRun("label", "namespace", ns, "pod-security.kubernetes.io/enforce=restricted");
    await applyPolicy(cluster, ns, { mode: "pipelineruns" });
    const run = pipelineRun(ns, {
      tasks: [{ name: "a" }, { name: "b", runAfter: ["a"] }],
      taskRunTemplate: { podTemplate: { securityContext: { fsGroup: 1000 } } },
    });
    // The run's own steps meet `restricted`; Tekton's containers do with set-security-context.
    const tasks = (run.spec.pipelineSpec as { tasks: { taskSpec: { steps: Record<string, unknown>[] } }[] })
      .tasks;
    for (const t of tasks)
      for (const step of t.taskSpec.steps)
        step.securityContext = {
          allowPrivilegeEscalation: false,
          capabilities: { drop: ["ALL"] },
          runAsNonRoot: true,
          runAsUser: 1000,
          seccompProfile: { type: "RuntimeDefault" },
        };
    const created = await createRun(cluster, run);
    await waitRunSucceeded(cluster, ns, created.metadata.name);
    // Its placeholder passed admission with the run's fsGroup merged over the restricted defaults.
    const placed = await waitForEvent(cluster, ns, created.metadata.name, "Placed");
    expect(placed.type).to.equal("Normal");
    const events = await runEvents(cluster, ns, created.metadata.name);
    expect(events.filter((e) => e.reason === "Waiting")).to.deep.equal([]);
  });

  it("a nodeSelector typo in a policy, then fixed: the runs that were waiting start", async () => {
    const { cluster } = await e2e();
    const ns = await createNamespace(cluster, "typo");
    await applyPolicy(cluster, ns, {
      mode: "pipelineruns",
      placeholder: { nodeSelector: { "kubernetes.io/os": "linx" } },
    });
    const runs = [
      await createRun(cluster, pipelineRun(ns, { tasks: [{ name: "a" }] })),
      await createRun(cluster, pipelineRun(ns, { tasks: [{ name: "a" }] })),
    ];
    for (const r of runs) await waitingFor(cluster, ns, r.metadata.name, /node affinity\/selector/);
    await patchPolicySpec(cluster, ns, { placeholder: { nodeSelector: { "kubernetes.io/os": "linux" } } });
    for (const r of runs) {
      await waitRunSucceeded(cluster, ns, r.metadata.name);
      const events = await runEvents(cluster, ns, r.metadata.name);
      expect(events.map((e) => e.reason)).to.include("PlaceholderUpdated");
    }
  });
});
