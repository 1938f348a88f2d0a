// The end-to-end environment, shared by every e2e test file in one mocha run: one local cluster
// (or the one `npm run cluster -- up` left running, when TEKTON_AFFINITY_CLUSTER_DIR is set) with our
// CRD installed and one controller replica. Stopped by the root hook in hooks.ts.

import { mkdirSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { LocalCluster } from "../cluster/cluster.js";
import { waitFor } from "../cluster/kube.js";
import { ControllerProcess } from "./controller-process.js";
import { VolumeInvariants } from "./volume-invariants.js";

const REPO = resolve(import.meta.dirname, "..", "..");

export interface E2E {
  cluster: LocalCluster;
  controller: ControllerProcess;
  logDir: string;
  /** Started by this process (and so stopped by it), as opposed to attached to. */
  owned: boolean;
  /** The volume invariant every test is checked against at its end (hooks.ts). */
  volumes: VolumeInvariants;
}

/** Controller timings shortened so that tests of waits, grace and settle periods run in seconds. */
export const TEST_CONTROLLER_ARGS = [
  "--settle-seconds=5",
  "--not-ready-grace-seconds=3",
  "--resync-seconds=20",
  // The harness's balancer and test stops need no endpoint propagation time.
  "--shutdown-drain-seconds=1",
  // Each replica re-reads the webhook Secret and renews its Lease this often (a CA rotation steps as fast).
  "--certificate-check-interval=5s",
];

let env: Promise<E2E> | undefined;

export function e2e(): Promise<E2E> {
  env ??= setUp();
  return env;
}

/** The environment if a test has set it up (the root hooks check it without starting it). */
export function e2eIfStarted(): Promise<E2E | undefined> | undefined {
  return env?.catch(() => undefined);
}

async function setUp(): Promise<E2E> {
  const attachTo = process.env.TEKTON_AFFINITY_CLUSTER_DIR;
  const nodes = 3;
  const cluster = attachTo ? LocalCluster.attach(attachTo) : await LocalCluster.start({ nodes });
  const logDir = join(cluster.state.dir, "logs");
  mkdirSync(logDir, { recursive: true });
  await installCrd(cluster);
  await cluster.clients.core
    .createNamespace({ body: { metadata: { name: "tekton-affinity" } } })
    .catch((err: { code?: number }) => {
      if (err.code !== 409) throw err;
    });
  const controller = new ControllerProcess({
    kubeconfig: cluster.kubeconfig,
    redisUrl: cluster.redisUrl,
    logDir,
    replicaId: "replica-0",
    args: TEST_CONTROLLER_ARGS,
  });
  const volumes = new VolumeInvariants(cluster.clients.kc);
  await volumes.start();
  await controller.start();
  await waitForGate(cluster);
  return { cluster, controller, logDir, owned: !attachTo, volumes };
}

const PROBE_NAMESPACE = "e2e-gate-probe";

/**
 * Waits until the apiserver calls our gate: it loads a new or changed webhook configuration a moment
 * after it is written, and a run created in between is admitted ungated. Probes with dry-run creates
 * of a PipelineRun in a namespace whose policy manages it.
 */
export async function waitForGate(cluster: LocalCluster): Promise<void> {
  const { applyPolicy, pipelineRun } = await import("./helpers.js");
  const exists = await cluster.clients.core.readNamespace({ name: PROBE_NAMESPACE }).then(
    () => true,
    () => false,
  );
  if (!exists) {
    await cluster.clients.core.createNamespace({ body: { metadata: { name: PROBE_NAMESPACE } } });
    await applyPolicy(cluster, PROBE_NAMESPACE, { mode: "pipelineruns" });
  }
  await waitFor("the apiserver to call the PipelineRun gate", async () => {
    const run = (await cluster.clients.custom.createNamespacedCustomObject({
      group: "tekton.dev",
      version: "v1",
      plural: "pipelineruns",
      namespace: PROBE_NAMESPACE,
      body: pipelineRun(PROBE_NAMESPACE, { tasks: [{ name: "probe" }] }),
      dryRun: "All",
    })) as { metadata?: { labels?: Record<string, string> } };
    return run.metadata?.labels?.["affinity.tekton.dev/managed"] === "true";
  });
}

/** The cluster-scoped pieces of deploy/ the controller relies on: the CRD and the reservations'
 * PriorityClass (reserve: LargestTask). */
export async function installCrd(cluster: LocalCluster): Promise<void> {
  await cluster.apply(readFileSync(join(REPO, "crds", "affinitypolicy.yaml"), "utf8"));
  await cluster.apply(readFileSync(join(REPO, "deploy", "base", "priority-class.yaml"), "utf8"));
  await cluster.kubectlRun(
    "wait",
    "--for=condition=Established",
    "--timeout=30s",
    "crd/affinitypolicies.affinity.tekton.dev",
  );
}

export async function tearDown(): Promise<void> {
  if (!env) return;
  const e = await env.catch(() => undefined);
  env = undefined;
  if (!e) return;
  e.volumes.stop();
  await e.controller.stop();
  if (e.owned) await e.cluster.stop();
}
