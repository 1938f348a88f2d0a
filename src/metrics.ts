// Prometheus metrics, per replica, served on /metrics of a plain-HTTP port of their own (--metrics-port),
// so Prometheus scrapes them without the webhooks' serving certificate. Documented in docs/metrics.md.

import { createServer, type Server } from "node:http";
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";

/** Seconds, from 0.5 ms to 10 s: an admission answers in about a millisecond, and the apiserver gives up
 * at the webhook's timeoutSeconds (5 s in deploy/). */
export const WEBHOOK_BUCKETS = [
  0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
];
/** Seconds, from 0.1 s to 2 h: most runs are placed within seconds, and one may wait up to its maxWait
 * (30 minutes unless the policy or --default-max-wait says otherwise). */
export const PLACEMENT_BUCKETS = [0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200];

export function createMetrics() {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: "tekton_affinity_" });
  const m = {
    registry,
    queueDepth: new Gauge({
      name: "tekton_affinity_queue_depth",
      help: "Jobs in the shared queue by state (the same value on every replica).",
      labelNames: ["state"],
      registers: [registry],
    }),
    jobDuration: new Histogram({
      name: "tekton_affinity_job_duration_seconds",
      help: "Time this replica spent on one reconcile job, by kind and outcome.",
      labelNames: ["kind", "outcome"],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers: [registry],
    }),
    jobRetries: new Counter({
      name: "tekton_affinity_job_retries_total",
      help: "Jobs this replica ran again after a failure, by kind.",
      labelNames: ["kind"],
      registers: [registry],
    }),
    malformedJobs: new Counter({
      name: "tekton_affinity_malformed_jobs_total",
      help: "Job payloads found in Redis that were not valid work items; logged and dropped.",
      registers: [registry],
    }),
    objectLockBusy: new Counter({
      name: "tekton_affinity_object_lock_busy_total",
      help: "Jobs that found their object locked by another worker and stepped aside briefly: contention (an event replacing a delayed job while another job for the object runs, stalled-job handovers), not errors.",
      labelNames: ["kind"],
      registers: [registry],
    }),
    placementLatency: new Histogram({
      name: "tekton_affinity_placement_latency_seconds",
      help: "From PipelineRun creation to the gate being cleared (placeholder scheduled).",
      buckets: PLACEMENT_BUCKETS,
      registers: [registry],
    }),
    webhookDuration: new Histogram({
      name: "tekton_affinity_webhook_duration_seconds",
      help: "Time to answer an admission request, by webhook.",
      labelNames: ["webhook", "allowed"],
      buckets: WEBHOOK_BUCKETS,
      registers: [registry],
    }),
    redisConnected: new Gauge({
      name: "tekton_affinity_redis_connected",
      help: "1 while this replica's work queue is connected to Redis, 0 during an outage (no reconcile runs then, and gated runs' maxWait does not count).",
      registers: [registry],
    }),
    webhookErrors: new Counter({
      name: "tekton_affinity_webhook_errors_total",
      help: "Admission handlers that threw: the gate then admits the run ungated, the pods and policies webhooks refuse. Any is a bug.",
      labelNames: ["webhook"],
      registers: [registry],
    }),
    resyncs: new Counter({
      name: "tekton_affinity_resyncs_total",
      help: "Times this replica enqueued every unfinished run and every policy again, by why.",
      labelNames: ["reason"],
      registers: [registry],
    }),
    enqueuesDropped: new Counter({
      name: "tekton_affinity_enqueues_dropped_total",
      help: "Work items not enqueued because too many were already waiting for Redis; the resync when Redis is back covers them.",
      registers: [registry],
    }),
    webhookRefused: new Counter({
      name: "tekton_affinity_webhook_requests_refused_total",
      help: "Webhook requests answered 429 unread because the bytes in flight would pass the server's budget: in all, or from one source address. The apiserver's reviews are small: a rise means a flood from something else.",
      labelNames: ["reason"],
      registers: [registry],
    }),
    webhookCacheMisses: new Counter({
      name: "tekton_affinity_webhook_cache_misses_total",
      help: "Admissions that found their PipelineRun or policies missing from this replica's cache, so they read the API once.",
      labelNames: ["kind"],
      registers: [registry],
    }),
    maxWaitExceeded: new Counter({
      name: "tekton_affinity_max_wait_exceeded_total",
      help: "Runs that waited longer than their maxWait to be co-scheduled, by what happened next (onMaxWait: fail or release).",
      labelNames: ["action"],
      registers: [registry],
    }),
    placeholderRefused: new Counter({
      name: "tekton_affinity_placeholder_refused_total",
      help: "Placeholder StatefulSets or claims the apiserver refused to create (quota, admission policy, invalid spec).",
      labelNames: ["kind"],
      registers: [registry],
    }),
    reservations: new Counter({
      name: "tekton_affinity_reservations_total",
      help: "Reservations (reserve: LargestTask) created: room for a run's largest task held on its node.",
      registers: [registry],
    }),
    reservedCpu: new Histogram({
      name: "tekton_affinity_reserved_cpu_cores",
      help: "CPU (cores) a run's reservation holds for its largest task, per reservation created.",
      buckets: [0.1, 0.25, 0.5, 1, 2, 4, 8, 16],
      registers: [registry],
    }),
    reservedMemory: new Histogram({
      name: "tekton_affinity_reserved_memory_bytes",
      help: "Memory (bytes) a run's reservation holds for its largest task, per reservation created.",
      buckets: [2 ** 27, 2 ** 28, 2 ** 29, 2 ** 30, 2 ** 31, 2 ** 32, 2 ** 33, 2 ** 34],
      registers: [registry],
    }),
    reservationPreemptions: new Counter({
      name: "tekton_affinity_reservation_preemptions_total",
      help: "Reservation pods the scheduler preempted to make room (for a task of the run, or any other pod).",
      registers: [registry],
    }),
    reservationUnfit: new Counter({
      name: "tekton_affinity_reservation_unfit_total",
      help: "Times a run was seen waiting because no node had room for its largest task.",
      registers: [registry],
    }),
    evictions: new Counter({
      name: "tekton_affinity_placeholder_evictions_total",
      help: "Placeholder pods deleted so they move off a node, by reason.",
      labelNames: ["reason"],
      registers: [registry],
    }),
    cacheCatchUp: new Counter({
      name: "tekton_affinity_job_cache_catch_up_total",
      help: "Jobs that found this replica's cache behind the event that caused them, by outcome (waited, timeout).",
      labelNames: ["outcome"],
      registers: [registry],
    }),
    tektonDefaultTemplate: new Gauge({
      name: "tekton_affinity_tekton_default_pod_template",
      help: "1 for the state of Tekton's config-defaults default-affinity-assistant-pod-template as last read (absent, loaded, invalid).",
      labelNames: ["status"],
      registers: [registry],
    }),
    cachedObjects: new Gauge({
      name: "tekton_affinity_cached_objects",
      help: "Objects held in this replica's informer caches, by kind (read at scrape time).",
      labelNames: ["kind"],
      registers: [registry],
    }),
  };
  return m;
}

/** Reports each cache's size at scrape time: memory follows these counts, so operators can see what a
 * replica holds (managed runs only, every node trimmed) without a heap dump. */
export function reportCacheSizes(metrics: Metrics, sizes: () => Record<string, number>): void {
  const gauge = metrics.cachedObjects as Gauge<string> & { collect?: () => void };
  gauge.collect = () => {
    for (const [kind, count] of Object.entries(sizes())) gauge.set({ kind }, count);
  };
}

export type Metrics = ReturnType<typeof createMetrics>;

/** A plain-HTTP server answering GET /metrics (anything else: 404) on every address. */
export function serveMetrics(metrics: Metrics, port: number, host = "0.0.0.0"): Promise<Server> {
  const server = createServer((req, res) => {
    if (req.method !== "GET" || req.url?.split("?")[0] !== "/metrics") {
      res.writeHead(404).end("only GET /metrics is served here\n");
      return;
    }
    metrics.registry.metrics().then(
      (body) => res.writeHead(200, { "Content-Type": metrics.registry.contentType }).end(body),
      (err: Error) => res.writeHead(500).end(`${err.message}\n`),
    );
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => resolve(server));
  });
}
