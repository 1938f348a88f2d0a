// Small helpers over @kubernetes/client-node that tests and the harness share.

import { execFile } from "node:child_process";
import * as k8s from "@kubernetes/client-node";
import { parseAllDocuments, stringify } from "yaml";

export interface Clients {
  kc: k8s.KubeConfig;
  core: k8s.CoreV1Api;
  apps: k8s.AppsV1Api;
  custom: k8s.CustomObjectsApi;
  objects: k8s.KubernetesObjectApi;
}

export function clientsFromKubeconfig(path: string): Clients {
  const kc = new k8s.KubeConfig();
  kc.loadFromFile(path);
  return {
    kc,
    core: kc.makeApiClient(k8s.CoreV1Api),
    apps: kc.makeApiClient(k8s.AppsV1Api),
    custom: kc.makeApiClient(k8s.CustomObjectsApi),
    objects: k8s.KubernetesObjectApi.makeApiClient(kc),
  };
}

export function parseYaml(text: string): k8s.KubernetesObject[] {
  return parseAllDocuments(text)
    .map((d) => d.toJS() as k8s.KubernetesObject | null)
    .filter((o): o is k8s.KubernetesObject => !!o && typeof o === "object" && !!o.kind);
}

/**
 * Server-side apply through kubectl. (client-node's typed serializer drops keys such as
 * x-kubernetes-preserve-unknown-fields from CRDs, so manifests go through kubectl untouched.)
 */
export async function kubectlApply(kubectl: string, kubeconfig: string, manifests: string): Promise<string> {
  return kubectlRun(
    kubectl,
    kubeconfig,
    ["apply", "--server-side", "--force-conflicts", "--field-manager=tekton-affinity-harness", "-f", "-"],
    manifests,
  );
}

export function kubectlRun(
  kubectl: string,
  kubeconfig: string,
  args: string[],
  input?: string,
): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      kubectl,
      [`--kubeconfig=${kubeconfig}`, ...args],
      { maxBuffer: 64 << 20 },
      (err, stdout, stderr) => {
        if (err) reject(new Error(`kubectl ${args.join(" ")} failed: ${stderr || err.message}`));
        else resolve(stdout);
      },
    );
    if (input !== undefined) child.stdin?.end(input);
  });
}

export function toYaml(objects: k8s.KubernetesObject[]): string {
  return objects.map((o) => stringify(o)).join("---\n");
}

export function isNotFound(err: unknown): boolean {
  return (err as { code?: number })?.code === 404;
}

export function isConflict(err: unknown): boolean {
  return (err as { code?: number })?.code === 409;
}

/** Thrown by a waitFor probe to stop waiting at once: the awaited state can no longer come. */
export class StopWaiting extends Error {}

/**
 * Polls `probe` until it returns a value other than undefined/false, or fails after `timeoutMs` with
 * `what` and the last observation, so a timeout says what was expected and what was seen.
 */
export async function waitFor<T>(
  what: string,
  probe: () => Promise<T | undefined | false>,
  { timeoutMs = 60_000, intervalMs = 250 }: { timeoutMs?: number; intervalMs?: number } = {},
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined && value !== false) return value;
      last = value;
    } catch (err) {
      if (err instanceof StopWaiting) throw err;
      last = err;
    }
    if (Date.now() > deadline) {
      const detail = last instanceof Error ? last.message : JSON.stringify(last);
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what} (last: ${detail})`);
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
