// npm run cluster -- up [--nodes N] [--zones N] [--real-nodes M] | down | status
//
// `up` returns once the cluster is ready and leaves it running in the background. Its data lives in a
// temp dir; `.cluster/` (in the repository root) holds links to its state and kubeconfig, plus `env`,
// a file to `source` that exports KUBECONFIG, REDIS_URL and KUBECTL.

import { existsSync, mkdirSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { Command } from "commander";
import { LocalCluster } from "./cluster.js";

const CLUSTER_DIR = resolve(process.env.TEKTON_AFFINITY_CLUSTER_DIR ?? ".cluster");

async function up(opts: { nodes: string; zones: string; realNodes: string }): Promise<void> {
  if (existsSync(join(CLUSTER_DIR, "state.json"))) {
    const running = LocalCluster.attach(CLUSTER_DIR).status();
    if (running.some((c) => c.alive)) {
      throw new Error(
        `a cluster is already running (state in ${CLUSTER_DIR}); run "npm run cluster -- down" first`,
      );
    }
  }
  const nodes = Number(opts.nodes);
  if (!Number.isInteger(nodes) || nodes < 0)
    throw new Error(`--nodes must be a whole number, got "${opts.nodes}"`);
  const zones = Number(opts.zones);
  if (!Number.isInteger(zones) || zones < 1 || zones > 26)
    throw new Error(`--zones must be a whole number from 1 to 26, got "${opts.zones}"`);
  const realNodes = Number(opts.realNodes);
  if (!Number.isInteger(realNodes) || realNodes < 0)
    throw new Error(`--real-nodes must be a whole number, got "${opts.realNodes}"`);
  // The state is linked before anything starts, so `down` finds whatever an interrupted `up` left running.
  const dir = await mkdtemp(join(tmpdir(), "tekton-affinity-cluster-"));
  rmSync(CLUSTER_DIR, { recursive: true, force: true });
  mkdirSync(CLUSTER_DIR, { recursive: true });
  symlinkSync(join(dir, "state.json"), join(CLUSTER_DIR, "state.json"));
  const cluster = await LocalCluster.start({ nodes, zones, realNodes, dir, stopOnExit: false });
  symlinkSync(cluster.kubeconfig, join(CLUSTER_DIR, "kubeconfig"));
  writeFileSync(
    join(CLUSTER_DIR, "env"),
    [
      `export KUBECONFIG=${join(CLUSTER_DIR, "kubeconfig")}`,
      `export REDIS_URL=${cluster.redisUrl}`,
      `export KUBECTL=${cluster.kubectl}`,
      `export TEKTON_AFFINITY_CLUSTER_DIR=${CLUSTER_DIR}`,
      "",
    ].join("\n"),
  );
  const real = realNodes ? ` and ${realNodes} real node(s)` : "";
  console.log(
    `cluster ready with ${nodes} KWOK nodes${real} in ${zones} zone(s); data in ${cluster.state.dir}`,
  );
  console.log(`source ${join(CLUSTER_DIR, "env")} to use it; "npm run cluster -- down" stops it`);
}

async function down(): Promise<void> {
  if (!existsSync(join(CLUSTER_DIR, "state.json"))) {
    console.log("no cluster is running");
    return;
  }
  const cluster = LocalCluster.attach(CLUSTER_DIR);
  await cluster.stop();
  rmSync(cluster.state.dir, { recursive: true, force: true });
  rmSync(CLUSTER_DIR, { recursive: true, force: true });
  console.log("cluster stopped");
}

function status(): void {
  if (!existsSync(join(CLUSTER_DIR, "state.json"))) {
    console.log("no cluster is running");
    process.exitCode = 1;
    return;
  }
  const rows = LocalCluster.attach(CLUSTER_DIR).status();
  const table = rows.map((c) => ({
    component: c.name,
    state: c.alive ? "running" : "stopped",
    pid: c.pid,
    port: c.port ?? "",
    log: c.log,
  }));
  console.table(table);
  if (rows.some((c) => !c.alive)) process.exitCode = 1;
}

const program = new Command("cluster").description(
  "Local Kubernetes + Tekton + KWOK + Redis for tests and demos",
);
program
  .command("up")
  .option("--nodes <n>", "number of fake KWOK nodes", "3")
  .option("--zones <n>", "number of zones the nodes are spread over (zone-a, zone-b, ...)", "3")
  .option("--real-nodes <m>", "number of real nodes (a kubelet with containerd) beside the KWOK nodes", "0")
  .action(up);
program.command("down").action(down);
program.command("status").action(status);
program.parseAsync().catch((err: Error) => {
  console.error(`cluster: ${err.message}`);
  process.exit(1);
});
