// "No outage of ours may fail a user's run": once a run is released, its later task pods need nothing
// from us. The run carries its placement in its own pod template (src/placement/run-placement.ts), so
// with every replica down its tasks are still created, still land beside the placeholder, and the run
// succeeds. Before, the pods webhook (failurePolicy Fail) refused the second task's pod and Tekton failed
// the run (PodCreationFailed). In workspaces mode each task carries its own term, to its claim's
// placeholder, where the run's inline pipeline says which claims each task binds.

import { expect } from "chai";
import { COMPONENT_LABEL, PLACEHOLDER_COMPONENT, PLACEMENT_LABEL } from "../../src/api/constants.js";
import { waitFor } from "../cluster/kube.js";
import { sleep } from "../cluster/processes.js";
import { e2e, waitForGate } from "./env.js";
import {
  applyPolicy,
  createNamespace,
  createRun,
  getRun,
  pipelineRun,
  placeholderPods,
  RWO_TEMPLATE,
  runEvents,
  succeeded,
  taskPods,
  waitRunSucceeded,
} from "./helpers.js";

describe("an outage of ours", function () {
  this.timeout(240_000);

  it("fails no released run: with every replica down, its later tasks start beside its placeholder", async () => {
    const env = await e2e();
    const { cluster } = env;
    const ns = await createNamespace(cluster, "outage");
    await applyPolicy(cluster, ns, { mode: "pipelineruns" });
    // Three tasks in a chain over one RWO claim: the second and third pods are created during the outage.
    const created = await createRun(
      cluster,
      pipelineRun(ns, {
        workspaces: { source: RWO_TEMPLATE },
        tasks: [
          { name: "first", seconds: 4, workspaces: ["source"] },
          { name: "second", runAfter: ["first"], seconds: 2, workspaces: ["source"] },
          { name: "third", runAfter: ["second"], seconds: 2, workspaces: ["source"] },
        ],
      }),
    );
    const token = created.metadata.labels?.[PLACEMENT_LABEL];
    expect(token, "the gate gives the run a placement token").to.be.a("string").and.not.equal("");
    const name = created.metadata.name;
    await waitFor(
      "the run to be released",
      async () => (await getRun(cluster, ns, name)).spec.status === undefined,
      {
        timeoutMs: 60_000,
      },
    );
    await waitFor("the first task's pod", async () => (await taskPods(cluster, ns, name)).has("first"), {
      timeoutMs: 60_000,
    });

    await env.controller.stop();
    try {
      const run = await waitRunSucceeded(cluster, ns, name, 120_000);
      const [placeholder] = await placeholderPods(cluster, ns, run.metadata.uid!);
      expect(placeholder?.metadata?.labels?.[PLACEMENT_LABEL]).to.equal(token);
      const node = placeholder?.spec?.nodeName;
      expect(node, "placeholder scheduled").to.be.a("string");
      const pods = await taskPods(cluster, ns, name);
      expect([...pods.keys()].sort()).to.deep.equal(["first", "second", "third"]);
      for (const [task, pod] of pods) {
        // Placed by the term the run carries (not by chance): it names this run's placeholder.
        const terms = pod.spec?.affinity?.podAffinity?.requiredDuringSchedulingIgnoredDuringExecution ?? [];
        expect(
          terms.map((t) => t.labelSelector?.matchLabels),
          task,
        ).to.deep.include({ [PLACEMENT_LABEL]: token, [COMPONENT_LABEL]: PLACEHOLDER_COMPONENT });
        expect(pod.spec?.nodeName, task).to.equal(node);
      }
    } finally {
      await env.controller.start();
      await waitForGate(cluster);
    }
  });

  it("fails no released run in workspaces mode: each later task follows its own claim's placeholder, with every replica down", async () => {
    const env = await e2e();
    const { cluster } = env;
    const ns = await createNamespace(cluster, "outage-ws");
    await applyPolicy(cluster, ns, { mode: "workspaces" });
    // Two single-node claims; the tasks after the first are created during the outage, alternating claims.
    const created = await createRun(
      cluster,
      pipelineRun(ns, {
        workspaces: { source: RWO_TEMPLATE, out: RWO_TEMPLATE },
        tasks: [
          { name: "first", seconds: 4, workspaces: ["source"] },
          { name: "second", runAfter: ["first"], seconds: 2, workspaces: ["out"] },
          { name: "third", runAfter: ["second"], seconds: 2, workspaces: ["source"] },
          { name: "plain", runAfter: ["first"], seconds: 1 },
        ],
      }),
    );
    const token = created.metadata.labels?.[PLACEMENT_LABEL];
    expect(token, "the gate gives the run a placement token").to.be.a("string").and.not.equal("");
    // The terms are per task: the run-wide template has none.
    expect(JSON.stringify(created.spec.taskRunTemplate ?? {})).to.not.contain(PLACEMENT_LABEL);
    const name = created.metadata.name;
    await waitFor(
      "the run to be released",
      async () => (await getRun(cluster, ns, name)).spec.status === undefined,
      {
        timeoutMs: 60_000,
      },
    );
    await waitFor("the first task's pod", async () => (await taskPods(cluster, ns, name)).has("first"), {
      timeoutMs: 60_000,
    });

    await env.controller.stop();
    try {
      const run = await waitRunSucceeded(cluster, ns, name, 120_000);
      // Each claim's placeholder, by the claim it mounts.
      const byClaim = new Map<string, { value?: string; node?: string }>();
      for (const p of await placeholderPods(cluster, ns, run.metadata.uid!)) {
        const claim = p.spec?.volumes?.find((v) => v.persistentVolumeClaim)?.persistentVolumeClaim?.claimName;
        if (claim)
          byClaim.set(claim, { value: p.metadata?.labels?.[PLACEMENT_LABEL], node: p.spec?.nodeName });
      }
      expect(byClaim.size, "one placeholder per claim").to.equal(2);
      const pods = await taskPods(cluster, ns, name);
      expect([...pods.keys()].sort()).to.deep.equal(["first", "plain", "second", "third"]);
      for (const [task, pod] of pods) {
        const terms = pod.spec?.affinity?.podAffinity?.requiredDuringSchedulingIgnoredDuringExecution ?? [];
        const claim = pod.spec?.volumes?.find((v) => v.persistentVolumeClaim)?.persistentVolumeClaim
          ?.claimName;
        if (!claim) {
          expect(terms, `${task} binds no claim and follows nothing`).to.deep.equal([]);
          continue;
        }
        const placeholder = byClaim.get(claim);
        expect(placeholder?.value, task)
          .to.be.a("string")
          .and.match(new RegExp(`^${token}-`));
        // Placed by the term the task carries (not by chance): it names its own claim's placeholder.
        expect(
          terms.map((t) => t.labelSelector?.matchLabels),
          task,
        ).to.deep.include({
          [PLACEMENT_LABEL]: placeholder!.value,
          [COMPONENT_LABEL]: PLACEHOLDER_COMPONENT,
        });
        expect(pod.spec?.nodeName, task).to.equal(placeholder!.node);
      }
    } finally {
      await env.controller.start();
      await waitForGate(cluster);
    }
  });

  it("fails no gated run: an outage of every replica longer than maxWait uses none of the run's wait", async () => {
    const env = await e2e();
    const { cluster } = env;
    const ns = await createNamespace(cluster, "outage-gated");
    await applyPolicy(cluster, ns, { mode: "pipelineruns", maxWait: "8s", onMaxWait: "Fail" });
    // The placeholder inherits the run's nodeSelector: no node has this label until the test sets it.
    const key = `outage.test/${ns}`.slice(0, 63);
    const created = await createRun(
      cluster,
      pipelineRun(ns, {
        tasks: [{ name: "a" }],
        taskRunTemplate: { podTemplate: { nodeSelector: { [key]: "yes" } } },
      }),
    );
    const name = created.metadata.name;
    await waitFor("the placeholder pod, unschedulable", async () => {
      const [pod] = await placeholderPods(cluster, ns, created.metadata.uid!);
      return pod && !pod.spec?.nodeName ? true : undefined;
    });
    const node = (await cluster.listNodes()).find(
      (n) => n.metadata?.labels?.type === "kwok" && !n.spec?.unschedulable && !n.spec?.taints?.length,
    )?.metadata?.name;
    expect(node, "a schedulable fake node").to.be.a("string");

    await env.controller.stop();
    try {
      // Longer than maxWait: counted from the gate, as before, the first reconcile after the outage
      // failed the run.
      await sleep(12_000);
    } finally {
      await env.controller.start();
      await waitForGate(cluster);
    }
    try {
      // The restarted replica looks at every run at once (its caches' first list); still within maxWait
      // counted from its start, the run keeps waiting.
      await sleep(4000);
      const waiting = await getRun(cluster, ns, name);
      expect(succeeded(waiting), "not failed by our outage").to.not.equal("False");
      expect(waiting.spec.status, "still gated").to.equal("PipelineRunPending");
      await cluster.labelNode(node!, key, "yes");
      const run = await waitRunSucceeded(cluster, ns, name, 60_000);
      expect(succeeded(run)).to.equal("True");
      const events = await runEvents(cluster, ns, name);
      expect(events.map((e) => e.reason)).to.not.include("MaxWaitExceeded");
    } finally {
      await cluster.labelNode(node!, key, null);
    }
  });
});
