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
import { findOverlaps, overlapReport } from "../src/api/resolve.js";
import { PATHS } from "../src/webhooks/server.js";
import { cachedNamespace, policy, stats, taskPod, webhookApp } from "./fixtures.js";
import { numberArg } from "./measure.js";

const arg = numberArg;
const POLICIES = arg("policies", 500);
const RUNS = arg("runs", 5000);
const REQUESTS = arg("requests", 2000);
const NS = "crowded";
const RESULTS = resolve(import.meta.dirname, "results", "admission.json");

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

function time(fn: () => unknown): number {
  const start = process.hrtime.bigint();
  fn();
  return Number(process.hrtime.bigint() - start) / 1e6;
}

const crowded = cachedNamespace(NS, POLICIES, RUNS);
const policies = crowded.policies;
const server = createServer(webhookApp([crowded]));
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

const cachedRun = (i: number) => crowded.runs.get(`run-${i % RUNS}`)!;
const gate = await roundTrips(PATHS.pipelineRuns, (i) =>
  review({ ...cachedRun(i), metadata: { ...cachedRun(i).metadata, uid: undefined } }, i),
);
const pods = await roundTrips(PATHS.pods, (i) => review(taskPod(NS, i % RUNS), i));
const validate = await roundTrips(PATHS.policies, (i) => review(policy(NS, i % POLICIES), i));
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
