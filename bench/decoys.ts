// bench/decoys: what one hostile tenant costs a replica, and whether the other tenants are still served.
// Writes bench/results/decoys.json and prints a table.
//
//   npx tsx bench/decoys.ts [--decoys 3000] [--annotation-kb 50] [--flood-connections 64]
//                           [--flood-mb 4] [--runs 20]
//
// One local control plane (3 KWOK nodes), one compiled replica (as the image runs it). Phases:
//   baseline   a fresh replica, settled: its RSS.
//   watched    the tenant creates --decoys StatefulSets wearing our placeholder labels (replicas 0), each
//              with an --annotation-kb annotation; the running replica watches them in. RSS once settled.
//   relisted   a fresh replica starts with the decoys in place and lists them (page by page). RSS once
//              settled, and its peak while listing.
//   flood      from another address (127.0.0.2: a tenant's pod, not the apiserver), --flood-connections
//              connections post --flood-mb MB bodies at the webhook port, again and again, while another
//              tenant creates --runs PipelineRuns: how many of its runs were gated (the gate answered) and
//              placed, create-to-released latency, the flood's answers (429: refused unread), and the
//              replica's RSS peak.
// Goal (issue 24): RSS grows by less than 30 MB with 3,000 decoys of 50 KB; other tenants' admissions are
// answered and their runs placed during the flood.

import { writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { GATED_ANNOTATION, MANAGED_LABEL } from "../src/api/constants.js";
import type { PipelineRun } from "../src/api/types.js";
import { LocalCluster } from "../test/cluster/cluster.js";
import { waitFor } from "../test/cluster/kube.js";
import { ControllerProcess } from "../test/e2e/controller-process.js";
import { createDecoys, WebhookFlood } from "../test/e2e/decoys.js";
import { installCrd, waitForGate } from "../test/e2e/env.js";
import {
  applyPolicy,
  createNamespace,
  createRun,
  getRun,
  metricSum,
  pipelineRun,
  succeeded,
} from "../test/e2e/helpers.js";
import { compiledController, numberArg, percentile } from "./measure.js";

const RESULTS = resolve(import.meta.dirname, "results", "decoys.json");

const arg = numberArg;
const DECOYS = arg("decoys", 3000);
const ANNOTATION_KB = arg("annotation-kb", 50);
const FLOOD_CONNECTIONS = arg("flood-connections", 64);
const FLOOD_MB = arg("flood-mb", 4);
const RUNS = arg("runs", 20);
const SETTLE_MS = 15_000;

const mb = (bytes: number) => Math.round((bytes / 2 ** 20) * 10) / 10;

/** RSS and cached StatefulSets, from the replica's /metrics. */
async function sample(replica: ControllerProcess) {
  const m = await replica.metrics();
  return {
    rssMb: mb(metricSum(m, "tekton_affinity_process_resident_memory_bytes")),
    heapMb: mb(metricSum(m, "tekton_affinity_nodejs_heap_size_used_bytes")),
    sets: metricSum(m, "tekton_affinity_cached_objects", 'kind="StatefulSet"'),
  };
}

/** Samples every second until `until` resolves; the peak RSS. */
async function peakWhile<T>(
  replica: ControllerProcess,
  until: Promise<T>,
): Promise<{ value: T; peakMb: number }> {
  let peakMb = 0;
  let done = false;
  const sampler = (async () => {
    while (!done) {
      peakMb = Math.max(peakMb, (await sample(replica).catch(() => ({ rssMb: 0 }))).rssMb);
      await new Promise((r) => setTimeout(r, 1000));
    }
  })();
  const value = await until;
  done = true;
  await sampler;
  return { value, peakMb };
}

async function main() {
  const cluster = await LocalCluster.start({ nodes: 3 });
  const entry = compiledController();
  const logDir = join(cluster.state.dir, "logs");
  const replica = (id: string, port?: number) =>
    new ControllerProcess({
      kubeconfig: cluster.kubeconfig,
      redisUrl: cluster.redisUrl,
      logDir,
      replicaId: id,
      ...(port ? { port } : {}),
      args: ["--log-level=info"],
      entry,
    });
  try {
    await installCrd(cluster);
    await cluster.clients.core.createNamespace({ body: { metadata: { name: "tekton-affinity" } } });
    const first = replica("decoys-baseline");
    await first.start();
    await waitForGate(cluster);
    await new Promise((r) => setTimeout(r, SETTLE_MS));
    const baseline = await sample(first);
    console.error(`[bench] baseline: RSS ${baseline.rssMb} MB`);

    const tenant = await createNamespace(cluster, "decoy-tenant");
    console.error(`[bench] creating ${DECOYS} decoys of ${ANNOTATION_KB} KB...`);
    const created = performance.now();
    const watchedPeak = await peakWhile(first, createDecoys(cluster, tenant, DECOYS, ANNOTATION_KB * 1024));
    const createSeconds = (performance.now() - created) / 1000;
    await waitFor("the replica to cache every decoy", async () => (await sample(first)).sets >= DECOYS, {
      timeoutMs: 300_000,
    });
    await new Promise((r) => setTimeout(r, SETTLE_MS));
    const watched = await sample(first);
    console.error(`[bench] watched: RSS ${watched.rssMb} MB (peak ${watchedPeak.peakMb})`);
    await first.stop();

    const second = replica("decoys-relisted", first.port);
    const relist = await peakWhile(
      second,
      (async () => {
        await second.start();
        await waitFor(
          "the fresh replica to cache every decoy",
          async () => (await sample(second)).sets >= DECOYS,
          {
            timeoutMs: 300_000,
          },
        );
      })(),
    );
    await new Promise((r) => setTimeout(r, SETTLE_MS));
    const relisted = await sample(second);
    console.error(`[bench] relisted: RSS ${relisted.rssMb} MB (peak ${relist.peakMb})`);

    // The flood, while another tenant's runs come and go.
    const other = await createNamespace(cluster, "decoy-neighbour");
    await applyPolicy(cluster, other, { mode: "pipelineruns" });
    const flood = new WebhookFlood({
      port: second.port,
      connections: FLOOD_CONNECTIONS,
      bodyBytes: FLOOD_MB * 1024 * 1024,
      sourceAddress: "127.0.0.2",
    });
    flood.start();
    const runs: { name: string; createdAt: number; gated: boolean }[] = [];
    const floodPhase = await peakWhile(
      second,
      (async () => {
        for (let i = 0; i < RUNS; i++) {
          const createdAt = Date.now();
          const run = await createRun(
            cluster,
            pipelineRun(other, { tasks: [{ name: "a" }, { name: "b", runAfter: ["a"] }] }),
          );
          runs.push({
            name: run.metadata.name,
            createdAt,
            gated:
              run.metadata.labels?.[MANAGED_LABEL] === "true" &&
              run.metadata.annotations?.[GATED_ANNOTATION] === "true",
          });
        }
        const releasedAt = new Map<string, number>();
        await waitFor(
          "the neighbour's runs to be released and to succeed",
          async () => {
            let done = 0;
            for (const r of runs) {
              const run: PipelineRun = await getRun(cluster, other, r.name);
              if (run.spec.status === undefined && !releasedAt.has(r.name))
                releasedAt.set(r.name, Date.now());
              if (succeeded(run) === "True" || succeeded(run) === "False") done++;
            }
            return done === runs.length;
          },
          { timeoutMs: 600_000, intervalMs: 500 },
        );
        return releasedAt;
      })(),
    );
    const tally = await flood.stop();
    const finished = await Promise.all(runs.map((r) => getRun(cluster, other, r.name)));
    const runsSucceeded = finished.map((r) => succeeded(r));
    // Why the runs that did not succeed failed, each reason once.
    const failures = [
      ...new Set(
        finished
          .filter((r) => succeeded(r) !== "True")
          .map((r) => {
            const c = r.status?.conditions?.find((x) => x.type === "Succeeded");
            return `${c?.reason}: ${c?.message?.slice(0, 300)}`;
          }),
      ),
    ];
    const latencies = runs
      .map((r) => (floodPhase.value.get(r.name) ?? Number.NaN) - r.createdAt)
      .filter((ms) => Number.isFinite(ms))
      .sort((a, b) => a - b);
    const m = await second.metrics();
    const result = {
      decoys: DECOYS,
      annotationKb: ANNOTATION_KB,
      createSeconds: Math.round(createSeconds),
      rssMb: {
        baseline: baseline.rssMb,
        watched: watched.rssMb,
        watchedPeak: watchedPeak.peakMb,
        relisted: relisted.rssMb,
        relistPeak: relist.peakMb,
        floodPeak: floodPhase.peakMb,
      },
      growthMb: {
        watched: Math.round((watched.rssMb - baseline.rssMb) * 10) / 10,
        relisted: Math.round((relisted.rssMb - baseline.rssMb) * 10) / 10,
      },
      heapMb: { baseline: baseline.heapMb, watched: watched.heapMb, relisted: relisted.heapMb },
      flood: {
        connections: FLOOD_CONNECTIONS,
        bodyMb: FLOOD_MB,
        ...tally,
        refusedByMetric: metricSum(m, "tekton_affinity_webhook_requests_refused_total"),
      },
      neighbour: {
        runs: runs.length,
        gated: runs.filter((r) => r.gated).length,
        succeeded: runsSucceeded.filter((s) => s === "True").length,
        failures,
        releasedMs: latencies.length
          ? { p50: Math.round(percentile(latencies, 50)), p99: Math.round(percentile(latencies, 99)) }
          : undefined,
      },
      goal: "RSS growth < 30 MB with 3,000 decoys of 50 KB; the neighbour's runs gated and placed during the flood",
      at: new Date().toISOString(),
    };
    await second.stop();
    writeFileSync(RESULTS, `${JSON.stringify(result, null, 2)}\n`);
    console.log("\nphase      RSS MB   (peak)   growth MB");
    console.log(`baseline   ${String(result.rssMb.baseline).padStart(6)}`);
    console.log(
      `watched    ${String(result.rssMb.watched).padStart(6)}   (${result.rssMb.watchedPeak})   ${result.growthMb.watched}`,
    );
    console.log(
      `relisted   ${String(result.rssMb.relisted).padStart(6)}   (${result.rssMb.relistPeak})   ${result.growthMb.relisted}`,
    );
    console.log(
      `flood      peak ${result.rssMb.floodPeak}; ${tally.requests} posts of ${FLOOD_MB} MB: ${tally.refused} refused (429), ${tally.answered} answered, ${tally.dropped} dropped`,
    );
    console.log(
      `neighbour  ${result.neighbour.gated}/${RUNS} gated, ${result.neighbour.succeeded}/${RUNS} succeeded; released p50 ${result.neighbour.releasedMs?.p50} ms, p99 ${result.neighbour.releasedMs?.p99} ms`,
    );
  } finally {
    await cluster.stop();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
