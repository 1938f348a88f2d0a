// release/monitoring.yaml, for clusters running the Prometheus Operator: a PodMonitor scraping every
// replica's plain-HTTP metrics port, a PrometheusRule with the alerts an operator of tekton-affinity
// needs, and the Grafana dashboard as a ConfigMap (grafana's sidecar picks up `grafana_dashboard: "1"`).

import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { toKubeYaml } from "./release-lib.js";

const REPO = resolve(import.meta.dirname, "..");
const NAMESPACE = "tekton-affinity";
const CONTROLLER = {
  "app.kubernetes.io/name": "tekton-affinity",
  "app.kubernetes.io/component": "controller",
};

export interface Alert {
  alert: string;
  expr: string;
  for: string;
  labels: { severity: "critical" | "warning" };
  annotations: { summary: string; description: string };
}

/** The alerts, each saying what to look at (docs/troubleshooting.md has the steps). */
export const ALERTS: Alert[] = [
  {
    alert: "TektonAffinityWebhookUnavailable",
    // Every replica's scrape failing means nobody answers the webhooks: managed runs' pods are refused
    // (failurePolicy Fail) and new runs start without co-scheduling.
    expr: `sum(up{namespace="${NAMESPACE}", job="${NAMESPACE}/tekton-affinity"}) == 0 or absent(up{namespace="${NAMESPACE}", job="${NAMESPACE}/tekton-affinity"})`,
    for: "2m",
    labels: { severity: "critical" },
    annotations: {
      summary: "No tekton-affinity replica is up",
      description:
        "No replica answers: pods of managed PipelineRuns are refused. kubectl -n tekton-affinity get pods; see docs/troubleshooting.md (the webhook is unreachable).",
    },
  },
  {
    alert: "TektonAffinityRunsWaitingLong",
    expr: "histogram_quantile(0.95, sum by (le) (rate(tekton_affinity_placement_latency_seconds_bucket[15m]))) > 600 or sum(increase(tekton_affinity_max_wait_exceeded_total[15m])) > 0",
    for: "15m",
    labels: { severity: "warning" },
    annotations: {
      summary: "PipelineRuns wait long to be co-scheduled",
      description:
        "Runs wait over 10 minutes for their placeholder, or exceed their maxWait. Read a waiting run's affinity.tekton.dev/waiting-for annotation and its Waiting events (docs/troubleshooting.md: a run is waiting).",
    },
  },
  {
    alert: "TektonAffinityQueueBacklog",
    expr: 'max(tekton_affinity_queue_depth{state="waiting"}) > 500',
    for: "10m",
    labels: { severity: "warning" },
    annotations: {
      summary: "tekton-affinity's work queue is backing up",
      description:
        "Over 500 jobs have waited for 10 minutes: the replicas cannot keep up or cannot reach the apiserver. Check tekton_affinity_job_retries_total and the replicas' logs; scale the Deployment.",
    },
  },
  {
    alert: "TektonAffinityRedisUnreachable",
    expr: "max(1 - tekton_affinity_redis_connected) > 0",
    for: "5m",
    labels: { severity: "warning" },
    annotations: {
      summary: "tekton-affinity's replicas cannot reach Redis",
      description:
        "Nothing is reconciled: gated runs wait (their maxWait does not count the outage), placeholders are neither created nor cleaned up. Webhooks keep serving. Check the Redis pod and the replicas' first error line (docs/troubleshooting.md).",
    },
  },
  {
    alert: "TektonAffinityReplicaNotReady",
    // kube-state-metrics' view of the Deployment.
    expr: `kube_deployment_status_replicas_available{namespace="${NAMESPACE}", deployment="tekton-affinity"} < kube_deployment_spec_replicas{namespace="${NAMESPACE}", deployment="tekton-affinity"}`,
    for: "10m",
    labels: { severity: "warning" },
    annotations: {
      summary: "A tekton-affinity replica is not ready",
      description:
        "Fewer replicas are available than wanted for 10 minutes: kubectl -n tekton-affinity describe pods (readiness says why: caches not synced, Redis unreachable).",
    },
  },
];

export function monitoringObjects(version: string): object[] {
  const labels = { "app.kubernetes.io/name": "tekton-affinity", "app.kubernetes.io/version": version };
  return [
    {
      apiVersion: "monitoring.coreos.com/v1",
      kind: "PodMonitor",
      metadata: { name: "tekton-affinity", namespace: NAMESPACE, labels },
      spec: {
        selector: { matchLabels: CONTROLLER },
        podMetricsEndpoints: [{ port: "metrics", path: "/metrics", interval: "30s" }],
      },
    },
    {
      apiVersion: "monitoring.coreos.com/v1",
      kind: "PrometheusRule",
      metadata: { name: "tekton-affinity", namespace: NAMESPACE, labels },
      spec: { groups: [{ name: "tekton-affinity", rules: ALERTS }] },
    },
    {
      apiVersion: "v1",
      kind: "ConfigMap",
      metadata: {
        name: "tekton-affinity-dashboard",
        namespace: NAMESPACE,
        labels: { ...labels, grafana_dashboard: "1" },
      },
      data: {
        "tekton-affinity.json": readFileSync(resolve(REPO, "deploy", "grafana-dashboard.json"), "utf8"),
      },
    },
  ];
}

export function monitoringManifest(version: string): string {
  const header = [
    `# tekton-affinity ${version} monitoring: generated by \`make release\`; needs the Prometheus Operator's`,
    "# CRDs (PodMonitor, PrometheusRule). Apply after release.yaml: kubectl apply -f monitoring.yaml",
  ];
  return `${header.join("\n")}\n${toKubeYaml(monitoringObjects(version))}`;
}
