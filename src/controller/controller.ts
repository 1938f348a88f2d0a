// One replica: webhooks, informers, queue workers and reconcilers in one process. Several replicas
// run against one cluster and one Redis; the queue spreads work between them.

import type { Server } from "node:https";
import * as k8s from "@kubernetes/client-node";
import { type Logger, pino } from "pino";
import { GATED_ANNOTATION, MANAGED_LABEL, POLICY_ANNOTATION, RUN_LABEL } from "../api/constants.js";
import type { AffinityPolicy, PipelineRun } from "../api/types.js";
import { loadKubeConfig, makeClients } from "../kube/clients.js";
import { EventRecorder } from "../kube/events.js";
import { type Caches, makeCaches, startCaches, stopCaches } from "../kube/informers.js";
import { TektonFlags } from "../kube/tekton-flags.js";
import { createMetrics, type Metrics } from "../metrics.js";
import { startAdminUi } from "../queue/admin-ui.js";
import type { WorkItem } from "../queue/work-item.js";
import { WorkQueue } from "../queue/work-queue.js";
import { AffinityPolicyReconciler } from "../reconcilers/affinitypolicy.js";
import { effectiveSpec } from "../reconcilers/effective-spec.js";
import { NodeTracker } from "../reconcilers/node-tracker.js";
import { CLEANED_UP_ANNOTATION, PipelineRunReconciler } from "../reconcilers/pipelinerun.js";
import { CertificateManager, caBundle } from "../webhooks/certificate-manager.js";
import { webhookConfigurations } from "../webhooks/configurations.js";
import { gatePipelineRun } from "../webhooks/gate.js";
import { mutateTaskPod } from "../webhooks/pods.js";
import { validateAffinityPolicy } from "../webhooks/policies.js";
import { createApp, listen } from "../webhooks/server.js";
import { type ControllerOptions, clusterDefaultSpec, redisConnection } from "./options.js";

/** "host" or "host:port" (a balancer in front of several replicas): the host alone. */
function urlHostName(hostAndPort: string): string {
  return hostAndPort.replace(/:\d+$/, "");
}

function webhookBaseUrl(hostAndPort: string, webhookPort: number): string {
  return /:\d+$/.test(hostAndPort) ? `https://${hostAndPort}` : `https://${hostAndPort}:${webhookPort}`;
}

/** What about a node decides whether a waiting placeholder may fit it (not its heartbeats). */
function schedulingShape(node: k8s.V1Node): string {
  const ready = node.status?.conditions?.find((c) => c.type === "Ready")?.status;
  return JSON.stringify([
    node.spec?.unschedulable ?? false,
    node.spec?.taints ?? [],
    ready,
    node.metadata?.labels ?? {},
    node.status?.allocatable ?? {},
  ]);
}

const TEKTON_FLAGS_POLL_MS = 10_000;

/** Tekton labels every TaskRun pod with its PipelineRun's name. */
const TEKTON_PIPELINERUN_LABEL = "tekton.dev/pipelineRun";

export class Controller {
  readonly logger: Logger;
  readonly metrics: Metrics;
  private caches?: Caches;
  private queue?: WorkQueue;
  private server?: Server;
  private adminServer?: import("node:http").Server;
  private certificates?: CertificateManager;
  private timers: NodeJS.Timeout[] = [];
  private synced = false;

  constructor(private readonly o: ControllerOptions) {
    this.logger = pino({ level: o.logLevel, base: { replica: o.replicaId } });
    this.metrics = createMetrics();
  }

  async start(): Promise<void> {
    const o = this.o;
    const kc = loadKubeConfig(o.kubeconfig);
    const clients = makeClients(kc);
    const caches = makeCaches(kc, this.logger);
    this.caches = caches;
    const clusterDefault = clusterDefaultSpec(o);
    const tektonFlags = new TektonFlags(clients.core, o.tektonNamespace);

    // Webhooks first: they need only the caches (not Redis), and report ready once those synced.
    this.certificates = new CertificateManager({
      core: clients.core,
      namespace: o.namespace,
      hosts: o.webhookUrlHost
        ? [urlHostName(o.webhookUrlHost)]
        : [`${o.serviceName}.${o.namespace}.svc`, `${o.serviceName}.${o.namespace}.svc.cluster.local`],
      logger: this.logger,
    });
    const bundle = await this.certificates.ensure();
    const app = createApp(
      {
        pipelineRun: (run) =>
          gatePipelineRun(
            run,
            caches.policies.list(run.metadata.namespace) as AffinityPolicy[],
            clusterDefault,
            tektonFlags.conflict(),
          ),
        pod: (pod, namespace) => {
          const runName = pod.metadata?.labels?.[TEKTON_PIPELINERUN_LABEL];
          const run = runName ? caches.runs.get(runName, namespace) : undefined;
          return mutateTaskPod(pod, {
            run,
            spec: run
              ? effectiveSpec(run, (ns, n) => caches.policies.get(n, ns), clusterDefault, o.tenancy)
              : undefined,
            placeholderNode: (ns, placeholder) =>
              caches.placeholderPods.get(`${placeholder}-0`, ns)?.spec?.nodeName,
          });
        },
        policy: (policy) => validateAffinityPolicy(policy, o.tenancy),
        ready: () => this.synced,
        readyWarning: () => tektonFlags.conflict(),
      },
      this.metrics,
      this.logger,
    );
    this.server = await listen(app, bundle, o.webhookPort);
    this.certificates.onChange(async (next) => {
      this.server?.setSecureContext({ cert: next.certPem, key: next.keyPem });
      await this.applyWebhookConfigurations(kc, caBundle(next)).catch((err) =>
        this.logger.error({ err: String(err) }, "could not update webhook caBundle"),
      );
    });
    this.certificates.start();
    this.logger.info({ port: o.webhookPort }, "webhook server listening");

    await startCaches(caches);
    this.synced = true;
    this.logger.info("informer caches synced");
    if (o.manageWebhookConfigurations) await this.applyWebhookConfigurations(kc, caBundle(bundle));

    const events = new EventRecorder(clients.core, "tekton-affinity", this.logger);
    const nodeTracker = new NodeTracker();
    await this.checkTektonFlags(tektonFlags);
    // The gate answers from this cached value: re-read it often enough that turning Tekton's assistant
    // on or off takes effect within seconds (one small GET per replica).
    this.timers.push(setInterval(() => void this.checkTektonFlags(tektonFlags), TEKTON_FLAGS_POLL_MS));
    for (const node of caches.nodes.list()) nodeTracker.observe(node);
    caches.nodes.onChange((node) => nodeTracker.observe(node));
    caches.nodes.onDelete((node) => nodeTracker.forget(node.metadata?.name ?? ""));
    const runs = new PipelineRunReconciler({
      tektonFlags,
      nodeTracker,
      clients,
      caches,
      events,
      metrics: this.metrics,
      logger: this.logger,
      clusterDefault,
      notReadyGraceMs: o.notReadyGraceSeconds * 1000,
      settlePeriodMs: o.settleSeconds * 1000,
      tenancy: o.tenancy,
    });
    const policies = new AffinityPolicyReconciler({
      events,
      tenancy: o.tenancy,
      tektonFlags,
      clients,
      caches,
      logger: this.logger,
    });

    const queue = new WorkQueue({
      connection: redisConnection(o),
      prefix: o.queuePrefix,
      concurrency: o.concurrency,
      replica: o.replicaId,
      logger: this.logger,
      onJobDone: (item, outcome, seconds, attempt) => {
        this.metrics.jobDuration.observe({ kind: item.kind, outcome }, seconds);
        if (attempt > 1) this.metrics.jobRetries.inc({ kind: item.kind });
      },
      onMalformed: () => this.metrics.malformedJobs.inc(),
      onLockBusy: (item) => this.metrics.objectLockBusy.inc({ kind: item.kind }),
    });
    this.queue = queue;
    queue.start(async (item) => {
      if (item.kind === "run") return runs.reconcile(item.namespace, item.name);
      if (item.kind === "policy") return policies.reconcile(item.namespace, item.name);
      return {};
    });
    if (o.adminPort) {
      this.adminServer = await startAdminUi(queue.queue, o.adminPort, o.adminHost);
      this.logger.info({ url: `http://${o.adminHost}:${o.adminPort}/queues` }, "queue UI listening");
    }
    this.watch(caches);
    this.resync();
    this.timers.push(setInterval(() => this.resync(), o.resyncSeconds * 1000));
    this.timers.push(setInterval(() => void this.sampleQueueDepth(), 5000));
    // Redis came back (possibly empty): the cluster still knows every run; enqueue them again.
    void queue.queue.client.then((redis) =>
      redis.on("ready", () => {
        queue.redisReady();
        this.logger.info("redis connection ready; resyncing work from the cluster");
        this.resync();
      }),
    );
  }

  /** Logs once per change whether Tekton's own assistant is on (also in /readyz and on runs). */
  private lastFlagReport?: string;
  private async checkTektonFlags(flags: TektonFlags): Promise<void> {
    try {
      await flags.coschedule();
    } catch (err) {
      this.logger.warn({ err: String(err) }, "could not read Tekton's feature-flags");
      return;
    }
    const conflict = flags.conflict() ?? "";
    if (conflict !== this.lastFlagReport && conflict) this.logger.warn(conflict);
    this.lastFlagReport = conflict;
  }

  private async applyWebhookConfigurations(kc: k8s.KubeConfig, bundle: string): Promise<void> {
    const o = this.o;
    const objects = k8s.KubernetesObjectApi.makeApiClient(kc);
    for (const obj of webhookConfigurations({
      caBundle: bundle,
      url: o.webhookUrlHost ? webhookBaseUrl(o.webhookUrlHost, o.webhookPort) : undefined,
      service: { name: o.serviceName, namespace: o.namespace, port: 443 },
      excludedNamespaces: [o.namespace, "kube-system"],
    })) {
      await objects.patch(
        obj,
        undefined,
        undefined,
        "tekton-affinity",
        true,
        k8s.PatchStrategy.ServerSideApply,
      );
    }
  }

  private enqueue(item: WorkItem): void {
    this.queue?.enqueue(item).catch((err) => this.logger.debug({ err: String(err), item }, "enqueue failed"));
  }

  private enqueueRun(run: PipelineRun): void {
    if (run.metadata.labels?.[MANAGED_LABEL] !== "true") return;
    this.enqueue({ kind: "run", namespace: run.metadata.namespace, name: run.metadata.name });
    const policy = run.metadata.annotations?.[POLICY_ANNOTATION];
    if (policy) this.enqueue({ kind: "policy", namespace: run.metadata.namespace, name: policy });
  }

  /** Every informer event becomes work for the object it concerns. */
  private watch(caches: Caches): void {
    caches.runs.onChange((run) => this.enqueueRun(run));
    caches.runs.onDelete((run) => {
      const policy = run.metadata.annotations?.[POLICY_ANNOTATION];
      if (policy) this.enqueue({ kind: "policy", namespace: run.metadata.namespace, name: policy });
    });
    const byRunLabel = (obj: k8s.KubernetesObject) => {
      const name = obj.metadata?.labels?.[RUN_LABEL];
      if (name) this.enqueue({ kind: "run", namespace: obj.metadata?.namespace ?? "", name });
    };
    caches.placeholderPods.onChange(byRunLabel);
    caches.placeholderPods.onDelete(byRunLabel);
    caches.placeholderSets.onChange(byRunLabel);
    caches.placeholderSets.onDelete(byRunLabel);
    // A placeholder pod the StatefulSet controller could not create (quota, Pod Security): tell its run.
    caches.failedCreates.onChange((event) => {
      const set = caches.placeholderSets.get(
        event.involvedObject.name ?? "",
        event.involvedObject.namespace ?? "",
      );
      if (set) byRunLabel(set);
    });
    // A node change concerns the runs whose placeholders sit on it (cordon, taint, NotReady); a node that
    // is new or newly usable may fit the runs that wait.
    const nodeShapes = new Map<string, string>();
    caches.nodes.onChange((node) => {
      const name = node.metadata?.name ?? "";
      for (const pod of caches.placeholderPods.list()) if (pod.spec?.nodeName === name) byRunLabel(pod);
      const shape = schedulingShape(node);
      if (nodeShapes.get(name) === shape) return;
      const known = nodeShapes.has(name);
      nodeShapes.set(name, shape);
      if (known || this.synced) this.enqueueWaitingRuns();
    });
    caches.nodes.onDelete((node) => nodeShapes.delete(node.metadata?.name ?? ""));
    const policyAndSiblings = (policy: AffinityPolicy) => {
      for (const p of caches.policies.list(policy.metadata.namespace))
        this.enqueue({ kind: "policy", namespace: p.metadata.namespace, name: p.metadata.name });
      // Runs waiting under it follow its new settings.
      this.enqueueWaitingRuns(policy.metadata.namespace, policy.metadata.name);
    };
    caches.policies.onChange(policyAndSiblings);
    caches.policies.onDelete(policyAndSiblings);
  }

  /** Runs still held at the gate (optionally only those of one policy). */
  private enqueueWaitingRuns(namespace?: string, policy?: string): void {
    for (const run of this.caches?.runs.list(namespace) ?? []) {
      const a = run.metadata.annotations;
      if (a?.[GATED_ANNOTATION] !== "true" || (policy && a[POLICY_ANNOTATION] !== policy)) continue;
      if (run.metadata.labels?.[MANAGED_LABEL] !== "true") continue;
      this.enqueue({ kind: "run", namespace: run.metadata.namespace, name: run.metadata.name });
    }
  }

  /** Level-triggered safety net: enqueue everything that may still need work. */
  resync(): void {
    const caches = this.caches;
    if (!caches) return;
    let runs = 0;
    for (const run of caches.runs.list()) {
      if (run.metadata.annotations?.[CLEANED_UP_ANNOTATION] === "true") continue;
      if (run.metadata.labels?.[MANAGED_LABEL] !== "true") continue;
      this.enqueueRun(run);
      runs++;
    }
    for (const p of caches.policies.list())
      this.enqueue({ kind: "policy", namespace: p.metadata.namespace, name: p.metadata.name });
    this.logger.debug({ runs }, "resync enqueued work");
  }

  private async sampleQueueDepth(): Promise<void> {
    try {
      const counts = await this.queue!.depth();
      for (const [state, n] of Object.entries(counts)) this.metrics.queueDepth.set({ state }, n);
    } catch {
      // Redis down: the gauge keeps its last value; the error is logged by the queue.
    }
  }

  async stop(): Promise<void> {
    for (const t of this.timers) clearInterval(t);
    this.certificates?.stop();
    await this.queue?.close();
    if (this.caches) await stopCaches(this.caches);
    this.adminServer?.close();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }
}
