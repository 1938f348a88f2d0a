// Builders and probes for end-to-end tests: PipelineRuns, policies, and what happened to them.

import { randomBytes } from "node:crypto";
import { join } from "node:path";
import type { CoreV1Event, V1Pod } from "@kubernetes/client-node";
import { GROUP, PLACEHOLDER_RUN_UID_LABEL, PLURAL, VERSION } from "../../src/api/constants.js";
import type { AffinityPolicy, AffinityPolicySpec, PipelineRun } from "../../src/api/types.js";
import type { LocalCluster } from "../cluster/cluster.js";
import { kubectlRun, StopWaiting, waitFor } from "../cluster/kube.js";
import { POD_DURATION_ANNOTATION } from "../cluster/kwok-stages.js";

export function uniqueName(prefix: string): string {
  return `${prefix}-${randomBytes(3).toString("hex")}`;
}

export async function createNamespace(cluster: LocalCluster, prefix: string): Promise<string> {
  const name = uniqueName(prefix);
  await cluster.clients.core.createNamespace({ body: { metadata: { name } } });
  await waitFor(`default ServiceAccount in ${name}`, () =>
    cluster.clients.core.readNamespacedServiceAccount({ name: "default", namespace: name }),
  );
  return name;
}

export async function applyPolicy(
  cluster: LocalCluster,
  namespace: string,
  spec: AffinityPolicySpec,
  name = "default",
  labels?: Record<string, string>,
  { waitObserved = true }: { waitObserved?: boolean } = {},
): Promise<AffinityPolicy> {
  const created = (await cluster.clients.custom.createNamespacedCustomObject({
    group: GROUP,
    version: VERSION,
    plural: PLURAL,
    namespace,
    body: {
      apiVersion: `${GROUP}/${VERSION}`,
      kind: "AffinityPolicy",
      metadata: { name, namespace, labels },
      spec,
    },
  })) as AffinityPolicy;
  if (!waitObserved) return created;
  // A policy applies to runs created after the controller has seen it (docs: namespace owner's
  // guide). A run created in the same breath races the informer, so wait as a careful user would:
  // for observedGeneration, which the controller writes once it has read the policy.
  const generation = created.metadata?.generation ?? 1;
  return waitFor(
    `AffinityPolicy ${namespace}/${name} to be observed by the controller`,
    async () => {
      const p = await getPolicy(cluster, namespace, name);
      return (p.status?.observedGeneration ?? 0) >= generation ? p : undefined;
    },
    { intervalMs: 50 },
  );
}

export async function getPolicy(
  cluster: LocalCluster,
  namespace: string,
  name: string,
): Promise<AffinityPolicy> {
  return (await cluster.clients.custom.getNamespacedCustomObject({
    group: GROUP,
    version: VERSION,
    plural: PLURAL,
    namespace,
    name,
  })) as AffinityPolicy;
}

export interface TaskShape {
  name: string;
  runAfter?: string[];
  /** Modelled run time of the task's pod (KWOK). Default 1 s. */
  seconds?: number;
  /** Workspaces the task binds (must be declared by the run). */
  workspaces?: string[];
}

export interface RunShape {
  name?: string;
  tasks: TaskShape[];
  /** Workspace name -> binding (e.g. { volumeClaimTemplate: ... } or { persistentVolumeClaim: ... }). */
  workspaces?: Record<string, Record<string, unknown>>;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  taskRunTemplate?: PipelineRun["spec"]["taskRunTemplate"];
  status?: string;
}

export const RWO_TEMPLATE = {
  volumeClaimTemplate: {
    spec: { accessModes: ["ReadWriteOnce"], resources: { requests: { storage: "10Mi" } } },
  },
};

export function pipelineRun(namespace: string, shape: RunShape): PipelineRun {
  const workspaces = Object.keys(shape.workspaces ?? {});
  return {
    apiVersion: "tekton.dev/v1",
    kind: "PipelineRun",
    metadata: {
      name: shape.name ?? uniqueName("run"),
      namespace,
      labels: shape.labels,
      annotations: shape.annotations,
    },
    spec: {
      ...(shape.status ? { status: shape.status } : {}),
      ...(shape.taskRunTemplate ? { taskRunTemplate: shape.taskRunTemplate } : {}),
      workspaces: Object.entries(shape.workspaces ?? {}).map(([name, binding]) => ({ name, ...binding })),
      pipelineSpec: {
        workspaces: workspaces.map((name) => ({ name })),
        tasks: shape.tasks.map((t) => ({
          name: t.name,
          ...(t.runAfter ? { runAfter: t.runAfter } : {}),
          workspaces: (t.workspaces ?? []).map((name) => ({ name, workspace: name })),
          taskSpec: {
            metadata: {
              annotations: { [POD_DURATION_ANNOTATION]: `${Math.round((t.seconds ?? 1) * 1000)}ms` },
            },
            workspaces: (t.workspaces ?? []).map((name) => ({ name })),
            // An explicit command: Tekton would otherwise look the image's entrypoint up in a registry.
            steps: [{ name: "work", image: "busybox", command: ["true"] }],
          },
        })),
      },
    },
  };
}

export interface ScriptStep {
  name: string;
  image: string;
  script: string;
  securityContext?: Record<string, unknown>;
}
export interface ScriptedTask {
  name: string;
  runAfter?: string[];
  workspace?: string;
  steps: ScriptStep[];
}

/** A run of real steps (scripts, for real nodes), not KWOK's modelled durations. */
export function scriptedRun(
  namespace: string,
  tasks: ScriptedTask[],
  extra: { podTemplate?: Record<string, unknown>; workspace?: Record<string, unknown> } = {},
): PipelineRun {
  return {
    apiVersion: "tekton.dev/v1",
    kind: "PipelineRun",
    metadata: { name: uniqueName("real"), namespace },
    spec: {
      ...(extra.podTemplate ? { taskRunTemplate: { podTemplate: extra.podTemplate } } : {}),
      workspaces: extra.workspace ? [{ name: "source", ...extra.workspace }] : [],
      pipelineSpec: {
        workspaces: extra.workspace ? [{ name: "source" }] : [],
        tasks: tasks.map((t) => ({
          name: t.name,
          ...(t.runAfter ? { runAfter: t.runAfter } : {}),
          workspaces: t.workspace ? [{ name: "source", workspace: t.workspace }] : [],
          taskSpec: { workspaces: t.workspace ? [{ name: "source" }] : [], steps: t.steps },
        })),
      },
    },
  } as PipelineRun;
}

/** Two tasks on one ReadWriteOnce workspace: `write` runs `writeScript`, then `read` prints the file
 * `note` it wrote (`$NOTE` in the script is that file's path). */
export function writeThenReadRun(
  namespace: string,
  writeScript: string,
  podTemplate?: Record<string, unknown>,
): PipelineRun {
  const note = "$(workspaces.source.path)/note";
  return scriptedRun(
    namespace,
    [
      {
        name: "write",
        workspace: "source",
        steps: [
          {
            name: "write",
            image: "docker.io/library/alpine:3.20",
            script: writeScript.replaceAll("$NOTE", note),
          },
        ],
      },
      {
        name: "read",
        runAfter: ["write"],
        workspace: "source",
        steps: [{ name: "read", image: "docker.io/library/busybox:1.36", script: `cat ${note}` }],
      },
    ],
    { ...(podTemplate ? { podTemplate } : {}), workspace: RWO_TEMPLATE },
  );
}

export async function createRun(cluster: LocalCluster, run: PipelineRun): Promise<PipelineRun> {
  return (await cluster.clients.custom.createNamespacedCustomObject({
    group: "tekton.dev",
    version: "v1",
    plural: "pipelineruns",
    namespace: run.metadata.namespace,
    body: run,
  })) as PipelineRun;
}

export async function getRun(cluster: LocalCluster, namespace: string, name: string): Promise<PipelineRun> {
  return (await cluster.clients.custom.getNamespacedCustomObject({
    group: "tekton.dev",
    version: "v1",
    plural: "pipelineruns",
    namespace,
    name,
  })) as PipelineRun;
}

export function succeeded(run: PipelineRun): string | undefined {
  return run.status?.conditions?.find((c) => c.type === "Succeeded")?.status;
}

export async function waitRunSucceeded(
  cluster: LocalCluster,
  namespace: string,
  name: string,
  timeoutMs = 120_000,
): Promise<PipelineRun> {
  return waitFor(
    `PipelineRun ${namespace}/${name} to succeed`,
    async () => {
      const run = await getRun(cluster, namespace, name);
      const status = succeeded(run);
      if (status === "False") {
        const c = run.status?.conditions?.[0];
        throw new StopWaiting(`PipelineRun ${namespace}/${name} failed: ${c?.reason}: ${c?.message}`);
      }
      return status === "True" ? run : undefined;
    },
    { timeoutMs, intervalMs: 500 },
  );
}

/** TaskRun pods of a run, by task name. */
export async function taskPods(
  cluster: LocalCluster,
  namespace: string,
  runName: string,
): Promise<Map<string, V1Pod>> {
  const pods = await cluster.clients.core.listNamespacedPod({
    namespace,
    // Only TaskRun pods: placeholders carry the run's labels too.
    labelSelector: `tekton.dev/pipelineRun=${runName},tekton.dev/taskRun`,
  });
  return new Map(pods.items.map((p) => [p.metadata?.labels?.["tekton.dev/pipelineTask"] ?? "", p]));
}

export async function placeholderPods(
  cluster: LocalCluster,
  namespace: string,
  runUid: string,
): Promise<V1Pod[]> {
  const pods = await cluster.clients.core.listNamespacedPod({
    namespace,
    labelSelector: `${PLACEHOLDER_RUN_UID_LABEL}=${runUid}`,
  });
  return pods.items;
}

export async function runEvents(
  cluster: LocalCluster,
  namespace: string,
  runName: string,
): Promise<CoreV1Event[]> {
  const events = await cluster.clients.core.listNamespacedEvent({
    namespace,
    fieldSelector: `involvedObject.name=${runName},involvedObject.kind=PipelineRun`,
  });
  return events.items;
}

export async function waitForEvent(
  cluster: LocalCluster,
  namespace: string,
  runName: string,
  reason: string,
  { type, timeoutMs = 60_000 }: { type?: "Normal" | "Warning"; timeoutMs?: number } = {},
): Promise<CoreV1Event> {
  return waitFor(
    `${type ?? ""} event ${reason} on PipelineRun ${namespace}/${runName}`,
    async () =>
      (await runEvents(cluster, namespace, runName)).find(
        (e) => e.reason === reason && (!type || e.type === type),
      ),
    { timeoutMs },
  );
}

/** Sum of a Prometheus metric over every label set containing `labels` (all of them by default): 0 when
 * no label set has a value yet. A name the exposition does not declare (no `# TYPE` line: a typo, a
 * renamed metric) throws, so a check on it cannot pass by reading nothing. */
export function metricSum(metrics: string, name: string, labels = ""): number {
  const family = name.replace(/_(bucket|sum|count)$/, "");
  if (!metrics.includes(`# TYPE ${name} `) && !metrics.includes(`# TYPE ${family} `))
    throw new Error(`metric ${name} is not in the exposition (no # TYPE line): a typo or a renamed metric?`);
  return metrics
    .split("\n")
    .filter((l) => (l.startsWith(`${name}{`) || l.startsWith(`${name} `)) && l.includes(labels))
    .reduce((sum, l) => sum + Number(l.split(" ").at(-1)), 0);
}

/** The namespace's PipelineRuns, read from the API (not a cache). */
export async function listRuns(cluster: LocalCluster, namespace: string): Promise<PipelineRun[]> {
  const list = (await cluster.clients.custom.listNamespacedCustomObject({
    group: "tekton.dev",
    version: "v1",
    plural: "pipelineruns",
    namespace,
  })) as { items: PipelineRun[] };
  return list.items;
}

/** Waits until `read` returns the same number twice, `intervalMs` apart (e.g. a job counter gone idle). */
export async function waitUntilSteady(
  what: string,
  read: () => Promise<number>,
  intervalMs = 3000,
): Promise<number> {
  let last = -1;
  await waitFor(
    what,
    async () => {
      const now = await read();
      const steady = now === last;
      last = now;
      return steady;
    },
    { timeoutMs: 120_000, intervalMs },
  );
  return last;
}

/**
 * kubectl as a namespace owner who may update the PipelineRuns of `namespace` (as Tekton's edit role
 * allows), and nothing else. The harness's admin is also the controller's identity, whose updates are
 * its own; a tenant's are not.
 */
export async function asTenant(
  cluster: LocalCluster,
  namespace: string,
  user = "tenant-developer",
): Promise<(...args: string[]) => Promise<string>> {
  await cluster.apply(`
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: run-editor, namespace: ${namespace}}
rules:
  - apiGroups: [tekton.dev]
    resources: [pipelineruns]
    verbs: [get, list, patch, update]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: run-editor, namespace: ${namespace}}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: run-editor}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: ${user}}]
`);
  const kubeconfig = cluster.writeImpersonatingKubeconfig(
    join(cluster.state.dir, `${user}-${namespace}.kubeconfig`),
    user,
  );
  return (...args: string[]) => kubectlRun(cluster.kubectl, kubeconfig, ["-n", namespace, ...args]);
}
