// Shared by the webhook benchmarks (bench/admission.ts, bench/webhooks.ts): namespaces of policies and
// runs as the informer caches would hold them, and the real express app answering from them.

import type { V1Pod } from "@kubernetes/client-node";
import { pino } from "pino";
import { MANAGED_LABEL, MODE_ANNOTATION, POLICY_ANNOTATION } from "../src/api/constants.js";
import { effectiveSpec } from "../src/api/effective-spec.js";
import type { AffinityPolicy, PipelineRun } from "../src/api/types.js";
import { createMetrics } from "../src/metrics.js";
import { gatePipelineRun } from "../src/webhooks/gate.js";
import { mutateTaskPod } from "../src/webhooks/pods.js";
import { validateAffinityPolicy } from "../src/webhooks/policies.js";
import { createApp } from "../src/webhooks/server.js";

/** What a replica's caches hold for one namespace. */
export interface CachedNamespace {
  name: string;
  policies: AffinityPolicy[];
  /** By run name. */
  runs: Map<string, PipelineRun>;
}

export function policy(namespace: string, i: number): AffinityPolicy {
  return {
    apiVersion: "affinity.tekton.dev/v1alpha1",
    kind: "AffinityPolicy",
    metadata: {
      name: `p-${i}`,
      namespace,
      creationTimestamp: new Date(Date.UTC(2024, 0, 1, 0, 0, i)).toISOString(),
    },
    spec: {
      mode: (["workspaces", "pipelineruns", "isolate-pipelinerun"] as const)[i % 3]!,
      // A mix that makes selectors overlap: a team label for all, an app label for each.
      pipelineRunSelector:
        i % 10 === 0
          ? { matchLabels: { team: `t-${i % 7}` } }
          : { matchLabels: { team: `t-${i % 7}`, app: `app-${i}` } },
    },
  };
}

/** Run i as the cache holds it once the gate has admitted it (policy p-(i mod policies) manages it). */
export function run(namespace: string, i: number, policies: number): PipelineRun {
  return {
    metadata: {
      name: `run-${i}`,
      namespace,
      uid: `00000000-0000-0000-0000-${String(i).padStart(12, "0")}`,
      labels: { team: `t-${i % 7}`, app: `app-${i % policies}`, [MANAGED_LABEL]: "true" },
      annotations: { [MODE_ANNOTATION]: "pipelineruns", [POLICY_ANNOTATION]: `p-${i % policies}` },
    },
    spec: { workspaces: [{ name: "src", persistentVolumeClaim: { claimName: `claim-${i}` } }] },
  };
}

/** A minimal task pod of run i, mounting the run's workspace claim. */
export function taskPod(namespace: string, i: number): V1Pod {
  return {
    metadata: {
      name: `run-${i}-build-pod`,
      namespace,
      labels: { "tekton.dev/pipelineRun": `run-${i}`, [MANAGED_LABEL]: "true" },
    },
    spec: {
      containers: [{ name: "step-build", image: "busybox" }],
      volumes: [{ name: "ws", persistentVolumeClaim: { claimName: `claim-${i}` } }],
    },
  };
}

export function cachedNamespace(name: string, policies: number, runs: number): CachedNamespace {
  return {
    name,
    policies: Array.from({ length: policies }, (_, i) => policy(name, i)),
    runs: new Map(Array.from({ length: runs }, (_, i) => [`run-${i}`, run(name, i, policies)])),
  };
}

/** The real webhook app (express, metrics, logger), answering from `namespaces` as from the caches. */
export function webhookApp(namespaces: CachedNamespace[]) {
  const byName = new Map(namespaces.map((ns) => [ns.name, ns]));
  const policyByName = new Map(
    namespaces.map((ns) => [ns.name, new Map(ns.policies.map((p) => [p.metadata.name, p]))]),
  );
  return createApp(
    {
      pipelineRun: (r) => gatePipelineRun(r, byName.get(r.metadata.namespace)?.policies ?? []),
      pod: (pod, namespace) => {
        const r = byName.get(namespace)?.runs.get(pod.metadata?.labels?.["tekton.dev/pipelineRun"] ?? "");
        return mutateTaskPod(pod, {
          run: r,
          spec: r ? effectiveSpec(r, (ns, n) => policyByName.get(ns)?.get(n)) : undefined,
          placeholderNode: () => "node-1",
        });
      },
      policy: (p) => validateAffinityPolicy(p),
      ready: () => true,
    },
    createMetrics(),
    pino({ level: "silent" }),
  );
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

/** n, p50, p99 and max of `ms`, rounded to the microsecond. */
export function stats(ms: number[]) {
  const s = [...ms].sort((a, b) => a - b);
  const round = (x: number) => Math.round(x * 1000) / 1000;
  return { n: s.length, p50: round(percentile(s, 50)), p99: round(percentile(s, 99)), max: round(s.at(-1)!) };
}
