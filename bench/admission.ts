// bench/admission: how fast the webhooks answer when one namespace is crowded (500 policies, 5,000
// runs), and what a policy event costs in status work, before (every policy's overlaps, O(P²)) and
// after (one policy's, O(P)). Writes bench/results/admission.json and prints a table.
//
//   npx tsx bench/admission.ts [--policies 500] [--runs 5000] [--requests 2000]
//
// The webhooks answer from in-memory caches, so no cluster is needed: the real express app is served
// over loopback HTTP (TLS left out: it costs the same whatever the namespace holds) and fed
// AdmissionReviews the way the apiserver sends them, one at a time, on one kept-alive connection.

import { writeFileSync } from "node:fs";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { resolve } from "node:path";
import type { V1Pod } from "@kubernetes/client-node";
import { pino } from "pino";
import { MANAGED_LABEL, MODE_ANNOTATION, POLICY_ANNOTATION } from "../src/api/constants.js";
import { findOverlaps, overlapReport } from "../src/api/resolve.js";
import type { AffinityPolicy, PipelineRun } from "../src/api/types.js";
import { createMetrics } from "../src/metrics.js";
import { effectiveSpec } from "../src/reconcilers/effective-spec.js";
import { gatePipelineRun } from "../src/webhooks/gate.js";
import { mutateTaskPod } from "../src/webhooks/pods.js";
import { validateAffinityPolicy } from "../src/webhooks/policies.js";
import { createApp, PATHS } from "../src/webhooks/server.js";

const arg = (name: string, fallback: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : fallback;
};
const POLICIES = arg("policies", 500);
const RUNS = arg("runs", 5000);
const REQUESTS = arg("requests", 2000);
const NS = "crowded";
const RESULTS = resolve(import.meta.dirname, "results", "admission.json");

function policy(i: number): AffinityPolicy {
  return {
    apiVersion: "affinity.tekton.dev/v1alpha1",
    kind: "AffinityPolicy",
    metadata: {
      name: `p-${i}`,
      namespace: NS,
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

function run(i: number): PipelineRun {
  return {
    metadata: {
      name: `run-${i}`,
      namespace: NS,
      uid: `00000000-0000-0000-0000-${String(i).padStart(12, "0")}`,
      labels: { team: `t-${i % 7}`, app: `app-${i % POLICIES}`, [MANAGED_LABEL]: "true" },
      annotations: { [MODE_ANNOTATION]: "pipelineruns", [POLICY_ANNOTATION]: `p-${i % POLICIES}` },
    },
    spec: { workspaces: [{ name: "src", persistentVolumeClaim: { claimName: `claim-${i}` } }] },
  };
}

function taskPod(i: number): V1Pod {
  return {
    metadata: {
      name: `run-${i}-build-pod`,
      namespace: NS,
      labels: { "tekton.dev/pipelineRun": `run-${i}`, [MANAGED_LABEL]: "true" },
    },
    spec: {
      containers: [{ name: "step-build", image: "busybox" }],
      volumes: [{ name: "ws", persistentVolumeClaim: { claimName: `claim-${i}` } }],
    },
  };
}

const review = (object: unknown, i: number) => ({
  apiVersion: "admission.k8s.io/v1",
  kind: "AdmissionReview",
  request: {
    uid: `req-${i}`,
    kind: { group: "", version: "v1", kind: "x" },
    namespace: NS,
    operation: "CREATE",
    object,
  },
});

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

function stats(ms: number[]) {
  const s = [...ms].sort((a, b) => a - b);
  const round = (x: number) => Math.round(x * 1000) / 1000;
  return { n: s.length, p50: round(percentile(s, 50)), p99: round(percentile(s, 99)), max: round(s.at(-1)!) };
}

function time(fn: () => unknown): number {
  const start = process.hrtime.bigint();
  fn();
  return Number(process.hrtime.bigint() - start) / 1e6;
}

const policies = Array.from({ length: POLICIES }, (_, i) => policy(i));
const runs = new Map(Array.from({ length: RUNS }, (_, i) => [`run-${i}`, run(i)]));
const policyByName = new Map(policies.map((p) => [p.metadata.name, p]));

const app = createApp(
  {
    pipelineRun: (r) => gatePipelineRun(r, policies),
    pod: (pod) => {
      const r = runs.get(pod.metadata?.labels?.["tekton.dev/pipelineRun"] ?? "");
      return mutateTaskPod(pod, {
        run: r,
        spec: r ? effectiveSpec(r, (_ns, n) => policyByName.get(n)) : undefined,
        placeholderNode: () => "node-1",
      });
    },
    policy: (p) => validateAffinityPolicy(p),
    ready: () => true,
  },
  createMetrics(),
  pino({ level: "silent" }),
);
const server = createServer(app);
await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

async function roundTrips(path: string, body: (i: number) => unknown): Promise<number[]> {
  const ms: number[] = [];
  for (let i = 0; i < REQUESTS; i++) {
    const payload = JSON.stringify(body(i));
    const start = process.hrtime.bigint();
    const res = await fetch(`${base}${path}`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: payload,
    });
    const answer = (await res.json()) as { response?: { allowed?: boolean } };
    ms.push(Number(process.hrtime.bigint() - start) / 1e6);
    if (!answer.response?.allowed) throw new Error(`${path} denied request ${i}: ${JSON.stringify(answer)}`);
  }
  return ms.slice(Math.floor(REQUESTS / 10)); // the first tenth warms up the JIT and the connection
}

const gate = await roundTrips(PATHS.pipelineRuns, (i) =>
  review({ ...run(i % RUNS), metadata: { ...run(i % RUNS).metadata, uid: undefined } }, i),
);
const pods = await roundTrips(PATHS.pods, (i) => review(taskPod(i % RUNS), i));
const validate = await roundTrips(PATHS.policies, (i) => review(policy(i % POLICIES), i));
server.close();

// Policy status work per policy event: one policy's overlaps now; every policy's before.
const reps = 20;
const one = Array.from({ length: reps }, (_, i) => time(() => overlapReport(policies[i]!, policies)));
const all = Array.from({ length: 3 }, () => time(() => findOverlaps(policies)));

const result = {
  date: new Date().toISOString(),
  node: process.version,
  policies: POLICIES,
  runs: RUNS,
  requests: REQUESTS,
  admission_ms: { pipelineRuns: stats(gate), pods: stats(pods), affinityPolicies: stats(validate) },
  policy_status_ms: { oneOverlapReport: stats(one), allOverlapReports: stats(all) },
};
writeFileSync(RESULTS, `${JSON.stringify(result, null, 2)}\n`);

console.log(`${POLICIES} policies and ${RUNS} runs in one namespace; ${REQUESTS} sequential admissions each`);
console.log(`${"".padEnd(50)} ${"p50 ms".padEnd(8)} ${"p99 ms".padEnd(8)} max ms`);
const row = (name: string, s: ReturnType<typeof stats>) =>
  console.log(`${name.padEnd(50)} ${String(s.p50).padEnd(8)} ${String(s.p99).padEnd(8)} ${s.max}`);
row("gate (PipelineRun CREATE), round trip", result.admission_ms.pipelineRuns);
row("pods (task pod CREATE), round trip", result.admission_ms.pods);
row("policy validation, round trip", result.admission_ms.affinityPolicies);
row("policy status: one policy's overlaps (now)", result.policy_status_ms.oneOverlapReport);
row("policy status: every policy's overlaps (before)", result.policy_status_ms.allOverlapReports);
console.log(`wrote ${RESULTS}`);
