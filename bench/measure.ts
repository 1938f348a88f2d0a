// Measuring helpers shared by the cluster benchmarks (placement, scale, vs-tekton, reserve).

import { execFileSync } from "node:child_process";
import { join, resolve } from "node:path";
import * as k8s from "@kubernetes/client-node";
import type { LocalCluster } from "../test/cluster/cluster.js";

/** The p-th percentile of ascending values (nearest rank); NaN for none (JSON: null). */
/** A numeric command-line option: the value after `--<name>`, or `fallback`. */
export function numberArg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : fallback;
}

export function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? Number.NaN;
}

/** An informer that restarts after a watch error (a lost watch would lose timestamps); resolves, once
 * listed, to a function that stops it. */
export async function inform<T extends k8s.KubernetesObject>(
  cluster: LocalCluster,
  path: string,
  list: () => Promise<k8s.KubernetesListObject<T>>,
  observe: (obj: T) => void,
  labelSelector?: string,
): Promise<() => Promise<void>> {
  const informer = k8s.makeInformer<T>(cluster.clients.kc, path, list, labelSelector);
  let stopped = false;
  informer.on("add", observe);
  informer.on("update", observe);
  informer.on("error", () => {
    if (!stopped) setTimeout(() => void informer.start().catch(() => undefined), 1000);
  });
  await informer.start();
  return async () => {
    stopped = true;
    await informer.stop();
  };
}

const REPO = resolve(import.meta.dirname, "..");

/**
 * The controller as the image runs it: compiled JavaScript (`npm run build`, then node
 * dist/src/cli/main.js), not TypeScript through tsx, whose loader and source maps cost memory and CPU
 * that production does not pay. Builds once per benchmark process; pass it as a replica's entry.
 */
export function compiledController(): { args: string[]; cwd: string } {
  if (!built) {
    console.error("[bench] compiling the controller (npm run build)...");
    execFileSync("npm", ["run", "build"], { cwd: REPO, stdio: "ignore" });
    built = true;
  }
  return { args: [join(REPO, "dist", "src", "cli", "main.js")], cwd: REPO };
}
let built = false;
