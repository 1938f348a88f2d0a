// Installs Tekton Pipelines' CRDs and ConfigMaps into the local cluster, read from the downloaded
// Tekton module (never copied into this repository).

import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import type { KubernetesObject } from "@kubernetes/client-node";
import { TEKTON_SHELL_IMAGE, tektonImage } from "./images.js";
import { type Clients, kubectlApply, parseYaml, toYaml, waitFor } from "./kube.js";

export const TEKTON_NAMESPACE = "tekton-pipelines";

/** Tekton's CRDs convert between versions through Tekton's webhook, which we do not run: with
 * strategy None the apiserver only rewrites apiVersion, which is enough for v1 objects. */
function withoutConversionWebhook(obj: KubernetesObject): KubernetesObject {
  const crd = obj as KubernetesObject & { spec?: { conversion?: unknown } };
  if (crd.kind === "CustomResourceDefinition" && crd.spec) crd.spec.conversion = { strategy: "None" };
  return crd;
}

/** ConfigMap overrides: Tekton's own affinity assistant off, and no metrics listener (its fixed port
 * would collide between clusters on one machine). */
const CONFIG_OVERRIDES: Record<string, Record<string, string>> = {
  // set-security-context: Tekton's own containers meet Pod Security `restricted`, so runs can execute in
  // namespaces that enforce it (a test checks our placeholders do too).
  "feature-flags": { coschedule: "disabled", "set-security-context": "true" },
  "config-observability": { "metrics-protocol": "none", "tracing-protocol": "none" },
};

function withOverrides(obj: KubernetesObject): KubernetesObject {
  const cm = obj as KubernetesObject & { data?: Record<string, string> };
  const override = cm.kind === "ConfigMap" ? CONFIG_OVERRIDES[cm.metadata?.name ?? ""] : undefined;
  if (override) cm.data = { ...cm.data, ...override };
  return cm;
}

async function readYamlFiles(dir: string, filter: (f: string) => boolean): Promise<KubernetesObject[]> {
  const files = (await readdir(dir)).filter((f) => f.endsWith(".yaml") && filter(f)).sort();
  const out: KubernetesObject[] = [];
  for (const f of files) out.push(...parseYaml(await readFile(join(dir, f), "utf8")));
  return out;
}

export interface KubectlTarget {
  kubectl: string;
  kubeconfig: string;
}

export async function installTekton(
  clients: Clients,
  target: KubectlTarget,
  tektonModuleDir: string,
): Promise<void> {
  const config = join(tektonModuleDir, "config");
  const namespace = await readYamlFiles(join(config, "100-namespace"), () => true);
  const crds = (await readYamlFiles(join(config, "300-crds"), () => true)).map(withoutConversionWebhook);
  const configMaps = (await readYamlFiles(config, (f) => f.startsWith("config-"))).filter(
    (o) => o.kind === "ConfigMap",
  );
  await kubectlApply(
    target.kubectl,
    target.kubeconfig,
    toYaml([...namespace, ...crds, ...configMaps.map(withOverrides)]),
  );
  await waitFor("Tekton CRDs to be established", async () => {
    const { resources } = await clients.custom
      .listClusterCustomObject({ group: "tekton.dev", version: "v1", plural: "pipelineruns" })
      .then(() => ({ resources: true }));
    return resources;
  });
}

export function tektonControllerArgs(kubeconfig: string): string[] {
  // The images real nodes hold (images.ts); KWOK fakes every container and never looks at them.
  return [
    `-kubeconfig=${kubeconfig}`,
    `-entrypoint-image=${tektonImage("entrypoint")}`,
    `-nop-image=${tektonImage("nop")}`,
    `-sidecarlogresults-image=${tektonImage("sidecarlogresults")}`,
    `-workingdirinit-image=${tektonImage("workingdirinit")}`,
    `-shell-image=${TEKTON_SHELL_IMAGE}`,
    "-shell-image-win=example.invalid/tekton/powershell:local",
    "-disable-ha=true",
  ];
}

export function tektonControllerEnv(probesPort: number): Record<string, string> {
  return {
    SYSTEM_NAMESPACE: TEKTON_NAMESPACE,
    KUBERNETES_MIN_VERSION: "v1.28.0",
    CONFIG_DEFAULTS_NAME: "config-defaults",
    CONFIG_LOGGING_NAME: "config-logging",
    CONFIG_OBSERVABILITY_NAME: "config-observability",
    CONFIG_FEATURE_FLAGS_NAME: "feature-flags",
    CONFIG_LEADERELECTION_NAME: "config-leader-election-controller",
    CONFIG_SPIRE: "config-spire",
    METRICS_DOMAIN: "tekton.dev/pipeline",
    PROBES_PORT: String(probesPort),
  };
}
