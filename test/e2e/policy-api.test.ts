// The AffinityPolicy API on the real apiserver: schema and CEL, our validating webhook (called by the
// apiserver), status conditions, printer columns, and the migrate command reading Tekton's flags.

import { execFile } from "node:child_process";
import { resolve } from "node:path";
import { promisify } from "node:util";
import { expect } from "chai";
import { GROUP, PLURAL, VERSION } from "../../src/api/constants.js";
import { waitFor } from "../cluster/kube.js";
import { TEKTON_NAMESPACE } from "../cluster/tekton.js";
import { e2e } from "./env.js";
import {
  applyPolicy,
  createNamespace,
  createRun,
  getPolicy,
  pipelineRun,
  waitRunSucceeded,
} from "./helpers.js";

const REPO = resolve(import.meta.dirname, "..", "..");

async function createRaw(namespace: string, name: string, spec: unknown): Promise<string | undefined> {
  const { cluster } = await e2e();
  try {
    await cluster.clients.custom.createNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      plural: PLURAL,
      namespace,
      body: {
        apiVersion: `${GROUP}/${VERSION}`,
        kind: "AffinityPolicy",
        metadata: { name, namespace },
        spec,
      },
    });
    return undefined;
  } catch (err) {
    return String((err as { body?: string }).body ?? err);
  }
}

function condition(p: Awaited<ReturnType<typeof getPolicy>>, type: string) {
  return p.status?.conditions?.find((c) => c.type === type);
}

describe("AffinityPolicy API", function () {
  this.timeout(120_000);

  it("rejects cross-field mistakes with the CRD's CEL rules, saying how to fix them", async () => {
    const { cluster } = await e2e();
    const ns = await createNamespace(cluster, "cel");
    const err = await createRaw(ns, "bad", { mode: "pipelineruns", isolation: { scope: "namespace" } });
    expect(err).to.contain("spec.isolation only applies when spec.mode is 'isolate-pipelinerun'");
    const err2 = await createRaw(ns, "bad2", { mode: "disabled", placeholder: { image: "pause" } });
    expect(err2).to.contain("spec.placeholder has no effect when spec.mode is 'disabled'");
    const err3 = await createRaw(ns, "bad3", { mode: "sometimes" });
    expect(err3).to.match(/Unsupported value: \\?"sometimes/);
  });

  it("rejects what the schema cannot check through the validating webhook, naming the field", async () => {
    const { cluster } = await e2e();
    const ns = await createNamespace(cluster, "webhook");
    const err = await createRaw(ns, "bad-selector", {
      mode: "pipelineruns",
      pipelineRunSelector: { matchExpressions: [{ key: "team", operator: "In", values: [] }] },
    });
    expect(err).to.contain("admission webhook");
    expect(err).to.contain("spec.pipelineRunSelector.matchExpressions[0]");
    const err2 = await createRaw(ns, "bad-sa", {
      mode: "pipelineruns",
      placeholder: { serviceAccountName: "Not_A_Name" },
    });
    expect(err2).to.contain("spec.placeholder.serviceAccountName");
    // Nothing was stored for either.
    const list = (await cluster.clients.custom.listNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      plural: PLURAL,
      namespace: ns,
    })) as { items: unknown[] };
    expect(list.items).to.have.length(0);
  });

  it("reports Ready, Overlapping (naming the winner) and printer columns", async () => {
    const { cluster } = await e2e();
    const ns = await createNamespace(cluster, "status");
    await applyPolicy(cluster, ns, { mode: "pipelineruns" }, "broad");
    await applyPolicy(
      cluster,
      ns,
      { mode: "workspaces", pipelineRunSelector: { matchLabels: { team: "web" } } },
      "web",
    );
    const broad = await waitFor("broad reports the overlap", async () => {
      const p = await getPolicy(cluster, ns, "broad");
      return condition(p, "Overlapping")?.status === "True" ? p : undefined;
    });
    expect(condition(broad, "Ready")?.status).to.equal("True");
    expect(condition(broad, "Overlapping")?.message).to.contain("web");
    const web = await getPolicy(cluster, ns, "web");
    expect(condition(web, "Overlapping")?.status).to.equal("True");
    const table = await cluster.kubectlRun("get", "afp", "-n", ns);
    expect(table.split("\n")[0]).to.match(/NAME\s+MODE\s+STRATEGY\s+READY\s+ACTIVE\s+AGE/);
    expect(table).to.match(/web\s+workspaces\s+podAffinity\s+True/);
  });

  it("counts active runs", async () => {
    const { cluster } = await e2e();
    const ns = await createNamespace(cluster, "active");
    await applyPolicy(cluster, ns, { mode: "pipelineruns" });
    const run = await createRun(cluster, pipelineRun(ns, { tasks: [{ name: "wait", seconds: 8 }] }));
    await waitFor(
      "activeRuns 1",
      async () => (await getPolicy(cluster, ns, "default")).status?.activeRuns === 1,
    );
    await waitRunSucceeded(cluster, ns, run.metadata.name);
    await waitFor(
      "activeRuns 0",
      async () => (await getPolicy(cluster, ns, "default")).status?.activeRuns === 0,
    );
  });

  it("reports Tekton's own affinity assistant when it is on, and migrate prints the equivalent policy", async () => {
    const { cluster } = await e2e();
    const ns = await createNamespace(cluster, "tekton-aa");
    const patchFlag = (coschedule: string) =>
      cluster.kubectlRun(
        "-n",
        TEKTON_NAMESPACE,
        "patch",
        "configmap",
        "feature-flags",
        "--type=merge",
        "-p",
        JSON.stringify({ data: { coschedule } }),
      );
    await patchFlag("isolate-pipelinerun");
    try {
      await applyPolicy(cluster, ns, { mode: "pipelineruns" });
      const p = await waitFor(
        "Ready=False because Tekton's assistant is on",
        async () => {
          const got = await getPolicy(cluster, ns, "default");
          return condition(got, "Ready")?.reason === "TektonAffinityAssistantEnabled" ? got : undefined;
        },
        { timeoutMs: 60_000 },
      );
      expect(condition(p, "Ready")?.status).to.equal("False");
      expect(condition(p, "Ready")?.message).to.contain('coschedule: "disabled"');
      // The replica's readiness says so too, without failing (its webhooks must keep serving).
      const readyz = await waitFor("readyz to report Tekton's assistant", async () => {
        const text = await (await e2e()).controller.get("/readyz");
        return text.startsWith("ok, but") ? text : undefined;
      });
      expect(readyz).to.match(/^ok, but: Tekton's own affinity assistant is on/);
      // So does an event on the policy.
      const events = await cluster.clients.core.listNamespacedEvent({
        namespace: ns,
        fieldSelector: "involvedObject.kind=AffinityPolicy,involvedObject.name=default",
      });
      expect(events.items.map((e) => e.reason)).to.include("TektonAffinityAssistantEnabled");
      // New runs are not gated: their pods would otherwise get two competing anchors.
      const run = await createRun(cluster, pipelineRun(ns, { tasks: [{ name: "a" }] }));
      expect(run.metadata.labels?.["affinity.tekton.dev/managed"]).to.equal(undefined);
      expect(run.spec.status).to.equal(undefined);

      const { stdout } = await promisify(execFile)(
        process.execPath,
        [
          resolve(REPO, "node_modules/tsx/dist/cli.mjs"),
          resolve(REPO, "src/cli/main.ts"),
          "migrate",
          `--kubeconfig=${cluster.kubeconfig}`,
          "--namespace",
          "team-a",
        ],
        { cwd: REPO },
      );
      expect(stdout).to.contain("kind: AffinityPolicy");
      expect(stdout).to.contain("namespace: team-a");
      expect(stdout).to.contain("mode: isolate-pipelinerun");
    } finally {
      // Tekton lowercases coschedule: "Disabled" turns its assistant off, and so it reads here.
      await patchFlag("Disabled");
      // Later tests need the gate back: the replica re-reads the flag every 10 s.
      await waitFor(
        "readyz without Tekton's assistant",
        async () => (await (await e2e()).controller.get("/readyz")) === "ok",
      );
      await patchFlag("disabled");
    }
    await waitFor("Ready=True once Tekton's assistant is off", async () =>
      condition(await getPolicy(cluster, ns, "default"), "Ready")?.status === "True" ? true : undefined,
    );
  });
});
