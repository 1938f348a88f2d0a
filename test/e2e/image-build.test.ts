// The image's build steps, without Docker (issue 13): what the Dockerfile's build stage does (npm ci on
// the lockfile alone, build, prune the dev dependencies) must give a tree that runs the controller. The
// pruned tree then replaces the test replica and co-schedules a run, so a dependency the controller
// needs at run time but package.json lists as a dev dependency fails here, not in users' clusters.

import { execFile } from "node:child_process";
import { cpSync, existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { expect } from "chai";
import { ControllerProcess } from "./controller-process.js";
import { e2e, TEST_CONTROLLER_ARGS, waitForGate } from "./env.js";
import {
  applyPolicy,
  createNamespace,
  createRun,
  pipelineRun,
  taskPods,
  waitForEvent,
  waitRunSucceeded,
} from "./helpers.js";

const REPO = resolve(import.meta.dirname, "..", "..");
const run = promisify(execFile);

async function npm(cwd: string, ...args: string[]): Promise<void> {
  await run("npm", [...args, "--no-audit", "--no-fund"], { cwd, maxBuffer: 64 * 1024 * 1024 });
}

describe("the image's build steps, without Docker", function () {
  this.timeout(600_000);

  it("npm ci, build and prune --omit=dev give a tree that runs the controller and places a run", async () => {
    const env = await e2e();
    const { cluster, logDir } = env;
    const app = mkdtempSync(join(tmpdir(), "tekton-affinity-image-"));
    try {
      // As the Dockerfile: the lockfile first, then the sources.
      for (const f of ["package.json", "package-lock.json"]) cpSync(join(REPO, f), join(app, f));
      await npm(app, "ci");
      for (const f of ["tsconfig.json", "tsconfig.build.json"]) cpSync(join(REPO, f), join(app, f));
      cpSync(join(REPO, "src"), join(app, "src"), { recursive: true });
      await npm(app, "run", "build");
      await npm(app, "prune", "--omit=dev");
      expect(existsSync(join(app, "node_modules", "mocha")), "dev dependencies pruned").to.equal(false);
      const main = join(app, "dist", "src", "cli", "main.js");
      expect(existsSync(main)).to.equal(true);

      // The pruned tree takes the test replica's place (same port: the webhook configuration stays).
      await env.controller.stop();
      const pruned = new ControllerProcess({
        kubeconfig: cluster.kubeconfig,
        redisUrl: cluster.redisUrl,
        logDir,
        replicaId: "pruned-image",
        port: env.controller.port,
        args: TEST_CONTROLLER_ARGS,
        entry: { args: [main], cwd: app },
      });
      try {
        await pruned.start();
        await waitForGate(cluster);
        const ns = await createNamespace(cluster, "image");
        await applyPolicy(cluster, ns, { mode: "pipelineruns" });
        const created = await createRun(
          cluster,
          pipelineRun(ns, { tasks: [{ name: "a" }, { name: "b", runAfter: ["a"] }] }),
        );
        await waitForEvent(cluster, ns, created.metadata.name, "Placed");
        await waitRunSucceeded(cluster, ns, created.metadata.name);
        const nodes = new Set(
          [...(await taskPods(cluster, ns, created.metadata.name)).values()].map((p) => p.spec?.nodeName),
        );
        expect(nodes.size).to.equal(1);
      } finally {
        await pruned.stop();
        await env.controller.start();
        await waitForGate(cluster);
      }
    } finally {
      rmSync(app, { recursive: true, force: true });
    }
  });
});
