// `tekton-affinity explain` against the real control plane: a finished run, a waiting run and a run
// no policy manages, each explained by the CLI run as a subprocess, as a user would.

import { execFile } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { expect } from "chai";
import { waitFor } from "../cluster/kube.js";
import { e2e } from "./env.js";
import {
  applyPolicy,
  createNamespace,
  createRun,
  getRun,
  pipelineRun,
  taskPods,
  waitForEvent,
  waitRunSucceeded,
} from "./helpers.js";

const REPO = resolve(import.meta.dirname, "..", "..");

interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

async function explain(kubeconfig: string, target: string, ...args: string[]): Promise<CliResult> {
  const argv = ["node_modules/tsx/dist/cli.mjs", "src/cli/main.ts", "explain", target];
  argv.push("--kubeconfig", kubeconfig, ...args);
  try {
    const { stdout, stderr } = await promisify(execFile)(process.execPath, argv, {
      cwd: REPO,
      timeout: 60_000,
    });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    if (typeof e.code !== "number") throw err;
    return { code: e.code, stdout: e.stdout ?? "", stderr: e.stderr ?? "" };
  }
}

/** The controller's log lines about one namespace, to say why a wait timed out. */
function controllerLog(logDir: string, namespace: string): string {
  const files = readdirSync(logDir).filter((f) => f.startsWith("controller"));
  const lines = files.flatMap((f) => readFileSync(join(logDir, f), "utf8").split("\n"));
  return lines
    .filter((l) => l.includes(namespace))
    .slice(-20)
    .join("\n");
}

describe("tekton-affinity explain", function () {
  this.timeout(180_000);

  it("names the policy, the mode, the placeholder's node and every task on that node", async () => {
    const { cluster, logDir } = await e2e();
    const ns = await createNamespace(cluster, "explain");
    await applyPolicy(cluster, ns, { mode: "pipelineruns" }, "team-policy");
    const run = await createRun(
      cluster,
      pipelineRun(ns, { tasks: [{ name: "fetch" }, { name: "build", runAfter: ["fetch"] }] }),
    );
    await waitRunSucceeded(cluster, ns, run.metadata.name);
    const pods = await taskPods(cluster, ns, run.metadata.name);
    expect([...pods.keys()].sort()).to.deep.equal(["build", "fetch"]);
    const node = pods.get("fetch")?.spec?.nodeName;
    expect(node).to.be.a("string");

    const out = await explain(cluster.kubeconfig, `${ns}/${run.metadata.name}`);
    expect(out.code, `${out.stderr}\n${controllerLog(logDir, ns)}`).to.equal(0);
    expect(out.stdout).to.contain("applied: AffinityPolicy team-policy, mode pipelineruns");
    expect(out.stdout).to.contain("released");
    // The placeholder's node, from the Placed event (and the placed-on annotation when present).
    expect(out.stdout).to.contain(`placeholder scheduled on ${node}`);
    for (const [task, pod] of pods) {
      expect(pod.spec?.nodeName).to.equal(node);
      expect(out.stdout).to.contain(`${task}: pod ${pod.metadata?.name} on node ${node}`);
    }

    // Cleanup is reported once the controller has done it; JSON output carries the same facts.
    await waitForEvent(cluster, ns, run.metadata.name, "CleanedUp");
    const json = await explain(cluster.kubeconfig, `${ns}/${run.metadata.name}`, "-o", "json");
    expect(json.code, json.stderr).to.equal(0);
    const facts = JSON.parse(json.stdout) as { recorded: { policy: string }; cleanup?: { message: string } };
    expect(facts.recorded.policy).to.equal("team-policy");
    expect(facts.cleanup?.message).to.contain("placeholder");
  });

  it("shows what a waiting run waits for, with the scheduler's message", async () => {
    const { cluster, logDir } = await e2e();
    const ns = await createNamespace(cluster, "explain-wait");
    await applyPolicy(cluster, ns, {
      mode: "pipelineruns",
      placeholder: { nodeSelector: { "no-such": "label" } },
    });
    const run = await createRun(cluster, pipelineRun(ns, { tasks: [{ name: "one" }] }));
    try {
      // The scheduler's verdict reaches the run's waiting-for annotation (and a Waiting event).
      const waiting = await waitFor(
        `${ns}/${run.metadata.name} to say it cannot be scheduled`,
        async () => {
          const r = await getRun(cluster, ns, run.metadata.name);
          const w = r.metadata.annotations?.["affinity.tekton.dev/waiting-for"];
          return w?.includes("cannot be scheduled") ? w : undefined;
        },
        { timeoutMs: 120_000 },
      ).catch((err: Error) => {
        throw new Error(`${err.message}\n${controllerLog(logDir, ns)}`);
      });
      const out = await explain(cluster.kubeconfig, `${ns}/${run.metadata.name}`);
      expect(out.code, out.stderr).to.equal(0);
      expect(out.stdout).to.contain("gated by tekton-affinity: waiting");
      expect(out.stdout).to.contain(`waiting for: ${waiting}`);
      expect(out.stdout).to.match(/scheduler: .*node affinity\/selector/);
    } finally {
      await cluster.clients.core.deleteNamespace({ name: ns });
    }
  });

  it("fails with a clear error for a run no policy manages, a missing run and a bad argument", async () => {
    const { cluster } = await e2e();
    const ns = await createNamespace(cluster, "explain-free");
    const run = await createRun(cluster, pipelineRun(ns, { tasks: [{ name: "one" }] }));
    const out = await explain(cluster.kubeconfig, `${ns}/${run.metadata.name}`);
    expect(out.code).to.equal(1);
    expect(out.stderr).to.contain(
      "no AffinityPolicy managed this run: its namespace has none that selects it",
    );
    expect(out.stderr).to.contain(`namespace ${ns} has no AffinityPolicy`);

    const missing = await explain(cluster.kubeconfig, `${ns}/no-such-run`);
    expect(missing.code).to.equal(1);
    expect(missing.stderr).to.contain(`PipelineRun ${ns}/no-such-run not found`);

    const bad = await explain(cluster.kubeconfig, "just-a-name");
    expect(bad.code).to.equal(1);
    expect(bad.stderr).to.contain("expected NAMESPACE/NAME");
  });
});
