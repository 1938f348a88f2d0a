// `tekton-affinity migrate`: reads Tekton's feature flags (from a file or the cluster) and prints
// the equivalent tekton-affinity configuration.

import { readFile } from "node:fs/promises";
import type { Command } from "commander";
import { parseAllDocuments } from "yaml";
import { migrateFeatureFlags, renderPolicyYaml } from "../api/migrate.js";

export const FEATURE_FLAGS_CONFIGMAP = "feature-flags";

export interface MigrateOptions {
  file?: string;
  kubeconfig?: string;
  tektonNamespace: string;
  namespace?: string[];
}

/** The flag data of a YAML file holding either a ConfigMap (the feature-flags one is preferred in a
 * multi-document file) or a plain key/value map. Scalars are turned into strings, as in a ConfigMap. */
export function featureFlagsFromYaml(text: string, source = "input"): Record<string, string> {
  const docs = parseAllDocuments(text);
  const objects: Record<string, unknown>[] = [];
  for (const doc of docs) {
    if (doc.errors.length > 0) throw new Error(`${source}: not valid YAML: ${doc.errors[0]?.message}`);
    const value = doc.toJS() as unknown;
    if (value !== null && typeof value === "object" && !Array.isArray(value)) {
      objects.push(value as Record<string, unknown>);
    }
  }
  const isConfigMap = (o: Record<string, unknown>) => o.kind === "ConfigMap";
  const chosen =
    objects.find(
      (o) =>
        isConfigMap(o) && (o.metadata as { name?: string } | undefined)?.name === FEATURE_FLAGS_CONFIGMAP,
    ) ??
    objects.find(isConfigMap) ??
    objects[0];
  if (!chosen) throw new Error(`${source}: expected a ConfigMap or a map of feature flags, found nothing`);
  const data = isConfigMap(chosen) ? ((chosen.data ?? {}) as Record<string, unknown>) : chosen;
  if (typeof data !== "object" || data === null || Array.isArray(data)) {
    throw new Error(`${source}: the ConfigMap's data must be a map of strings`);
  }
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(data)) {
    if (v === null || v === undefined) continue;
    if (typeof v === "object") throw new Error(`${source}: flag ${k} must be a string, not a nested object`);
    out[k] = String(v);
  }
  return out;
}

async function readFromCluster(opts: MigrateOptions): Promise<Record<string, string>> {
  const k8s = await import("@kubernetes/client-node");
  const kc = new k8s.KubeConfig();
  try {
    if (opts.kubeconfig) kc.loadFromFile(opts.kubeconfig);
    else kc.loadFromDefault();
  } catch (err) {
    throw new Error(
      `cannot load kubeconfig ${opts.kubeconfig ?? "(default)"}: ${(err as Error).message}; pass --kubeconfig <path> or read the flags from a file with --file`,
    );
  }
  const api = kc.makeApiClient(k8s.CoreV1Api);
  try {
    const cm = await api.readNamespacedConfigMap({
      name: FEATURE_FLAGS_CONFIGMAP,
      namespace: opts.tektonNamespace,
    });
    return cm.data ?? {};
  } catch (err) {
    if (err instanceof k8s.ApiException && err.code === 404) {
      throw new Error(
        `ConfigMap ${opts.tektonNamespace}/${FEATURE_FLAGS_CONFIGMAP} not found; pass --tekton-namespace where Tekton Pipelines is installed, or --file`,
      );
    }
    throw new Error(
      `cannot read ConfigMap ${opts.tektonNamespace}/${FEATURE_FLAGS_CONFIGMAP}: ${(err as Error).message}`,
    );
  }
}

/** Runs the command; returns the YAML to print or throws an Error whose message is for the user. */
export async function runMigrate(opts: MigrateOptions): Promise<string> {
  const data = opts.file
    ? featureFlagsFromYaml(
        await readFile(opts.file, "utf8").catch((e: Error) => {
          throw new Error(`cannot read ${opts.file}: ${e.message}`);
        }),
        opts.file,
      )
    : await readFromCluster(opts);
  const result = migrateFeatureFlags(data);
  if (!result.ok) throw new Error(result.error);
  return renderPolicyYaml(result.mode, { namespaces: opts.namespace, explanation: result.explanation });
}

export function registerMigrateCommand(program: Command): Command {
  return program
    .command("migrate")
    .description(
      "Read Tekton's affinity-assistant feature flags (disable-affinity-assistant, coschedule) and print the equivalent AffinityPolicy objects or cluster default",
    )
    .option(
      "--file <path>",
      "read the flags from a feature-flags ConfigMap YAML or a plain key/value YAML map",
    )
    .option(
      "--kubeconfig <path>",
      "kubeconfig to read ConfigMap feature-flags from the cluster (default: in-cluster or $KUBECONFIG)",
    )
    .option("--tekton-namespace <ns>", "namespace of Tekton's feature-flags ConfigMap", "tekton-pipelines")
    .option("--namespace <ns...>", "emit an AffinityPolicy named default for each of these namespaces")
    .action(async (opts: MigrateOptions) => {
      try {
        process.stdout.write(await runMigrate(opts));
      } catch (err) {
        process.stderr.write(`error: ${(err as Error).message}\n`);
        process.exitCode = 2;
      }
    });
}
