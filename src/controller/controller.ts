// One replica: webhooks, informers, queue workers and reconcilers in one process. Several replicas
// run against one cluster and one Redis; the queue spreads work between them.

import type { Server } from "node:https";
import * as k8s from "@kubernetes/client-node";
import { type Logger, pino } from "pino";
import { CLEANED_UP_ANNOTATION, isWatchedRun, POLICY_ANNOTATION } from "../api/constants.js";
import type { PipelineRun } from "../api/types.js";
import { apiMessage, isNotFound, loadKubeConfig, makeClients } from "../kube/clients.js";
import { EventRecorder } from "../kube/events.js";
import { type Caches, makeCaches, startCaches, stopCaches, type WatchedCache } from "../kube/informers.js";
import {
  CONFIG_DEFAULTS,
  DEFAULT_AA_POD_TEMPLATE_KEY,
  type DefaultsState,
  TektonDefaults,
} from "../kube/tekton-defaults.js";
import { TektonFlags } from "../kube/tekton-flags.js";
import { createMetrics, type Metrics, reportCacheSizes, serveMetrics } from "../metrics.js";
import { startAdminUi } from "../queue/admin-ui.js";
import { type CauseKind, cacheHasSeen, type WorkCause, type WorkItem } from "../queue/work-item.js";
import { type ReconcileResult, WorkQueue } from "../queue/work-queue.js";
import { ActiveRunIndex } from "../reconcilers/active-runs.js";
import { AffinityPolicyReconciler } from "../reconcilers/affinitypolicy.js";
import { watchPolicyInputs } from "../reconcilers/affinitypolicy-watches.js";
import { ChangeFilter, runFingerprint } from "../reconcilers/change-filter.js";
import { NodeTracker } from "../reconcilers/node-tracker.js";
import { PipelineRunReconciler } from "../reconcilers/pipelinerun.js";
import { enqueueWaitingRuns, watchRunInputs } from "../reconcilers/pipelinerun-watches.js";
import { causeOf, runKey, runNews, type Versioned, type WorkSink } from "../reconcilers/work-sink.js";
import { CertificateManager, caBundle } from "../webhooks/certificate-manager.js";
import { caBundleOnly, webhookConfigurations } from "../webhooks/configurations.js";
import { guardMarks } from "../webhooks/gate.js";
import { validateAffinityPolicy } from "../webhooks/policies.js";
import { createApp, listen } from "../webhooks/server.js";
import { WebhookInputs } from "../webhooks/webhook-inputs.js";
import { type ControllerOptions, clusterDefaultSpec, redisConnection } from "./options.js";

/** The user name the apiserver knows this replica by: one SelfSubjectReview at start. */
async function ownUsername(kc: k8s.KubeConfig): Promise<string | undefined> {
  const review = await kc.makeApiClient(k8s.AuthenticationV1Api).createSelfSubjectReview({
    body: { apiVersion: "authentication.k8s.io/v1", kind: "SelfSubjectReview" },
  });
  return review.status?.userInfo?.username;
}

/** "host" or "host:port" (a balancer in front of several replicas): the host alone. */
function urlHostName(hostAndPort: string): string {
  return hostAndPort.replace(/:\d+$/, "");
}

function webhookBaseUrl(hostAndPort: string, webhookPort: number): string {
  return /:\d+$/.test(hostAndPort) ? `https://${hostAndPort}` : `https://${hostAndPort}:${webhookPort}`;
}

/** What about a node decides whether a waiting placeholder may fit it (not its heartbeats). */

const TEKTON_FLAGS_POLL_MS = 10_000;
/** How often a replica checks that Redis still holds the queue's keys. */
const REDIS_KEYS_CHECK_MS = 5_000;
/** At most one policy status update per this long for its runs' starts and ends. */
const POLICY_COUNT_THROTTLE_MS = 2_000;
/** Enqueues that may wait for Redis at once (each is a small command in ioredis' offline queue). */
const MAX_PENDING_ENQUEUES = 10_000;
/** What waiting for an event needs of a cache, whichever its kind. */
interface VersionedCache {
  get(name: string, namespace?: string): Versioned | undefined;
  lastResourceVersion?: string;
}

/** How long a job waits for this replica's cache to see the event that caused it (see catchUpWith). */
const CACHE_CATCH_UP_MS = 2_000;
/** When a job ran without its event in the cache: how soon it looks again. */
const CATCH_UP_RETRY_MS = 1_000;

export class Controller {
  readonly logger: Logger;
  readonly metrics: Metrics;
  private caches?: Caches;
  private queue?: WorkQueue;
  private server?: Server;
  private adminServer?: import("node:http").Server;
  private metricsServer?: import("node:http").Server;
  private certificates?: CertificateManager;
  private timers: NodeJS.Timeout[] = [];
  private synced = false;
  /** Set on SIGTERM: /readyz fails so endpoints drop this replica, while it still answers admissions. */
  private draining = false;
  /** This replica's own user name, as the apiserver sees it (SelfSubjectReview): updates by it are ours. */
  private username: string | undefined;
  /** Which run events are new work; told of our own writes so they do not come back as work. */
  private readonly runChanges = new ChangeFilter(runFingerprint);
  /** What the watches (src/reconcilers/*-watches.ts) enqueue through. */
  private readonly sink: WorkSink = {
    enqueue: (item) => this.enqueue(item),
    enqueuePolicyCount: (namespace, name, cause) => this.enqueuePolicyCount(namespace, name, false, cause),
    synced: () => this.synced,
  };

  constructor(private readonly o: ControllerOptions) {
    this.logger = pino({ level: o.logLevel, base: { replica: o.replicaId } });
    this.metrics = createMetrics();
  }

  async start(): Promise<void> {
    const o = this.o;
    const kc = loadKubeConfig(o.kubeconfig);
    const clients = makeClients(kc);
    this.username = await ownUsername(kc).catch((err) => {
      this.logger.warn(
        { err: apiMessage(err) },
        "could not learn this replica's user name (SelfSubjectReview); users' updates of our marks are not undone",
      );
      return undefined;
    });
    const caches = makeCaches(kc, this.logger);
    this.caches = caches;
    // Before the caches start, so the index sees the first list's adds.
    const activeRuns = new ActiveRunIndex();
    caches.runs.onChange((run) => activeRuns.observe(run));
    caches.runs.onDelete((run) => activeRuns.forget(run));
    reportCacheSizes(this.metrics, () =>
      Object.fromEntries(
        Object.values(caches).map((c: WatchedCache<k8s.KubernetesObject>) => [c.kind, c.list().length]),
      ),
    );
    const clusterDefault = clusterDefaultSpec(o);
    const tektonFlags = new TektonFlags(clients.core, o.tektonNamespace);

    // Webhooks first: they need only the caches (not Redis), and report ready once those synced.
    this.certificates = new CertificateManager({
      core: clients.core,
      coordination: kc.makeApiClient(k8s.CoordinationV1Api),
      replicaId: o.replicaId,
      checkIntervalMs: o.certificateCheckIntervalMs,
      namespace: o.namespace,
      hosts: o.webhookUrlHost
        ? [urlHostName(o.webhookUrlHost)]
        : [`${o.serviceName}.${o.namespace}.svc`, `${o.serviceName}.${o.namespace}.svc.cluster.local`],
      logger: this.logger,
    });
    const bundle = await this.certificates.ensure();
    const inputs = new WebhookInputs({
      clients,
      caches,
      clusterDefault,
      tenancy: o.tenancy,
      metrics: this.metrics,
    });
    const app = createApp(
      {
        pipelineRun: (run) => inputs.gate(run, tektonFlags.conflict()),
        // Unknown own identity: guard nothing rather than undo our own writes.
        pipelineRunUpdate: (run, old, username) =>
          guardMarks(run, old, this.username === undefined || username === this.username),
        pod: (pod, namespace) => inputs.admitTaskPod(pod, namespace),
        policy: (policy) => validateAffinityPolicy(policy, o.tenancy),
        ready: () => this.synced && !this.draining,
        notReadyReason: () => (this.draining ? "shutting down" : "informer caches not synced"),
        draining: () => this.draining,
        readyWarning: () => tektonFlags.conflict(),
      },
      this.metrics,
      this.logger,
    );
    if (o.metricsPort) {
      this.metricsServer = await serveMetrics(this.metrics, o.metricsPort);
      this.logger.info({ port: o.metricsPort }, "metrics served over HTTP on /metrics");
    }
    this.server = await listen(app, bundle, o.webhookPort);
    this.certificates.onChange(async (next) => {
      this.server?.setSecureContext({ cert: next.certPem, key: next.keyPem });
      // --no-manage-webhook-configurations: whoever manages them injects the new caBundle.
      if (!o.manageWebhookConfigurations) return;
      await this.applyWebhookConfigurations(kc, caBundle(next)).catch((err) =>
        this.logger.error({ err: String(err) }, "could not update webhook caBundle"),
      );
    });
    this.certificates.start();
    this.logger.info({ port: o.webhookPort }, "webhook server listening");

    await startCaches(caches);
    this.logger.info("informer caches synced");
    // Ready only once the apiserver can call us: our caBundle is in the webhook configurations (until then
    // its calls would fail TLS, and a policy would be checked by its schema alone).
    if (o.manageWebhookConfigurations) await this.applyWebhookConfigurations(kc, caBundle(bundle));
    this.synced = true;

    const events = new EventRecorder(clients.core, "tekton-affinity", this.logger);
    const nodeTracker = new NodeTracker();
    const tektonDefaults = new TektonDefaults(clients.core, o.tektonNamespace);
    const checkTekton = async () => {
      await this.checkTektonFlags(tektonFlags);
      await this.checkTektonDefaults(tektonDefaults, events);
    };
    await checkTekton();
    // The gate answers from this cached value: re-read it often enough that turning Tekton's assistant
    // on or off takes effect within seconds (one small GET per replica, and one for config-defaults).
    this.timers.push(setInterval(() => void checkTekton(), TEKTON_FLAGS_POLL_MS));
    for (const node of caches.nodes.list()) nodeTracker.observe(node);
    caches.nodes.onChange((node) => nodeTracker.observe(node));
    caches.nodes.onDelete((node) => nodeTracker.forget(node.metadata?.name ?? ""));
    const runs = new PipelineRunReconciler({
      tektonFlags,
      tektonDefaults,
      tektonResolversNamespace: o.tektonResolversNamespace,
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
      unavailableMs: (from, to) => this.queue?.outages.overlapMs(from, to) ?? 0,
      onRunWritten: (run) => {
        this.runChanges.observe(runKey(run), run);
        const cause = causeOf("PipelineRun", run);
        if (cause) void this.queue?.markOwnWrite(cause);
      },
    });
    const policies = new AffinityPolicyReconciler({
      activeRuns,
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
      onRedisConnected: (connected) => this.metrics.redisConnected.set(connected ? 1 : 0),
    });
    this.metrics.redisConnected.set(1);
    this.queue = queue;
    const reconcile = (item: WorkItem): Promise<ReconcileResult> => {
      switch (item.kind) {
        case "run":
          return runs.reconcile(item.namespace, item.name);
        case "policy":
          return policies.reconcile(item.namespace, item.name);
      }
    };
    queue.start(async (item) => {
      const caughtUp = !item.cause || (await this.catchUpWith(item.cause));
      const result = await reconcile(item);
      // Decided without the event: look again soon, since the other replicas' copies of the event were
      // this same job and will not come back as work.
      if (!caughtUp)
        return { requeueAfterMs: Math.min(result.requeueAfterMs ?? CATCH_UP_RETRY_MS, CATCH_UP_RETRY_MS) };
      return result;
    });
    if (o.adminPort) {
      this.adminServer = await startAdminUi(queue.queue, o.adminPort, o.adminHost);
      this.logger.info({ url: `http://${o.adminHost}:${o.adminPort}/queues` }, "queue UI listening");
    }
    this.watch(caches);
    this.resync("start");
    this.timers.push(
      setInterval(() => void this.periodicResync(o.resyncSeconds * 1000), o.resyncSeconds * 1000),
    );
    this.timers.push(setInterval(() => void this.sampleQueueDepth(), 5000));
    this.timers.push(setInterval(() => void this.resyncIfRedisLostItsKeys(), REDIS_KEYS_CHECK_MS));
    // Redis came back (possibly empty): the cluster still knows every run; enqueue them again.
    void queue.queue.client.then((redis) =>
      redis.on("ready", () => {
        queue.redisReady();
        this.logger.info("redis connection ready; resyncing work from the cluster");
        this.resync("redis-reconnect");
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

  /**
   * Re-reads Tekton's config-defaults pod template for its assistants. A change reaches the runs that
   * still wait (their placeholders are recreated with it); an invalid template is ignored, and said so
   * on the ConfigMap, where the operator who wrote it looks.
   */
  private lastDefaults?: string;
  private async checkTektonDefaults(defaults: TektonDefaults, events: EventRecorder): Promise<void> {
    let state: DefaultsState;
    try {
      state = await defaults.refresh();
    } catch (err) {
      this.logger.warn({ err: String(err) }, `could not read Tekton's ${CONFIG_DEFAULTS}`);
      return;
    }
    for (const status of ["absent", "loaded", "invalid"])
      this.metrics.tektonDefaultTemplate.set({ status }, state.status === status ? 1 : 0);
    const seen = JSON.stringify(state);
    if (seen === this.lastDefaults) return;
    const first = this.lastDefaults === undefined;
    this.lastDefaults = seen;
    const where = `${CONFIG_DEFAULTS} ${DEFAULT_AA_POD_TEMPLATE_KEY} in namespace ${this.o.tektonNamespace}`;
    if (state.status === "invalid") {
      const message = `${where} is ignored: ${state.problem}; placeholders use their policies' and runs' settings until it is fixed`;
      this.logger.warn(message);
      const cm = defaults.configMap;
      if (cm?.metadata?.name)
        void events.record(
          {
            apiVersion: "v1",
            kind: "ConfigMap",
            name: cm.metadata.name,
            namespace: this.o.tektonNamespace,
            uid: cm.metadata.uid,
          },
          "Warning",
          "InvalidAffinityAssistantPodTemplate",
          message,
        );
    } else if (state.status === "loaded") {
      this.logger.info({ template: state.template }, `placeholders take ${where} as their lowest layer`);
    }
    if (!first && this.caches) enqueueWaitingRuns(this.caches.runs, this.sink);
  }

  private async applyWebhookConfigurations(kc: k8s.KubeConfig, bundle: string): Promise<void> {
    const o = this.o;
    const objects = k8s.KubernetesObjectApi.makeApiClient(kc);
    const desired = webhookConfigurations({
      caBundle: bundle,
      url: o.webhookUrlHost ? webhookBaseUrl(o.webhookUrlHost, o.webhookPort) : undefined,
      service: { name: o.serviceName, namespace: o.namespace, port: 443 },
      excludedNamespaces: [o.namespace, "kube-system"],
    });
    for (const obj of desired) {
      if (o.createWebhookConfigurations) {
        await objects.patch(
          obj,
          undefined,
          undefined,
          "tekton-affinity",
          true,
          k8s.PatchStrategy.ServerSideApply,
        );
        continue;
      }
      // Installed configurations (release.yaml): only their caBundle is ours. A strategic merge patch
      // merges webhooks by name, so the rest stays as the operator applied it, and a configuration that
      // is gone (uninstalled) stays gone: the patch of a missing object is a 404, never a create.
      await objects
        .patch(
          caBundleOnly(obj, bundle),
          undefined,
          undefined,
          "tekton-affinity",
          undefined,
          k8s.PatchStrategy.StrategicMergePatch,
        )
        .catch((err: unknown) => {
          if (!isNotFound(err)) throw err;
          this.logger.error(
            { kind: obj.kind, name: obj.metadata?.name },
            "webhook configuration not installed: apply release.yaml (or deploy/), which ships it; this replica only keeps its caBundle",
          );
        });
    }
  }

  /** Enqueues waiting for Redis: bounded, so an outage cannot grow memory without end. */
  private pendingEnqueues = 0;

  private enqueue(item: WorkItem, { resync = false, throttleMs = 0 } = {}): void {
    if (!this.queue) return;
    // While Redis is away, ioredis holds commands in its offline queue. Past the bound, drop: when
    // Redis is back, the resync enqueues every unfinished run again from the caches. The resync itself
    // is never dropped (the caches bound it), or the work it restores would wait for the next one.
    if (!resync && this.pendingEnqueues >= MAX_PENDING_ENQUEUES) {
      this.metrics.enqueuesDropped.inc();
      return;
    }
    this.pendingEnqueues++;
    this.queue
      .enqueue(item, throttleMs, { throttle: throttleMs > 0 })
      .catch((err) => this.logger.debug({ err: String(err), item }, "enqueue failed"))
      .finally(() => this.pendingEnqueues--);
  }

  /**
   * A managed run, and its policy, whose activeRuns count may have changed: the resync's. The work of
   * watch events is enqueued by the watches (src/reconcilers/*-watches.ts).
   */
  private enqueueRun(run: PipelineRun, resync = false): void {
    if (!isWatchedRun(run)) return;
    const cause = resync ? undefined : causeOf("PipelineRun", run);
    this.enqueue(
      { kind: "run", namespace: run.metadata.namespace, name: run.metadata.name, cause },
      { resync },
    );
    const policy = run.metadata.annotations?.[POLICY_ANNOTATION];
    if (policy) this.enqueuePolicyCount(run.metadata.namespace, policy, resync, cause);
  }

  /**
   * A policy whose count of active runs may have changed. Runs start and finish in bursts: one status
   * update per POLICY_COUNT_THROTTLE_MS covers them all (a spec change still enqueues it at once).
   */
  private enqueuePolicyCount(namespace: string, name: string, resync = false, cause?: WorkCause): void {
    this.enqueue(
      { kind: "policy", namespace, name, cause },
      { resync, throttleMs: POLICY_COUNT_THROTTLE_MS },
    );
  }

  /**
   * Informer events become work for the objects they concern. Each reconciler's watches live beside it
   * (src/reconcilers/pipelinerun-watches.ts, affinitypolicy-watches.ts); what stays here is what they
   * share: the run change filter, which this controller also tells of its own writes (onRunWritten).
   */
  private watch(caches: Caches): void {
    const runs = runNews(caches.runs, this.runChanges);
    // Policy watches first, so that a policy's change enqueues the policy and the policies it overlaps
    // before its waiting runs, as when one handler did both. A run's change then enqueues its policy's
    // count before the run (it used to be after): a job for another object, delayed by the count's
    // throttle, so the order reaches no reconciler.
    watchPolicyInputs(caches, runs, this.sink);
    watchRunInputs(caches, runs, this.sink);
  }

  /**
   * Waits (briefly) until this replica's cache has seen the event that caused a job. The event's job
   * is added once, by whichever replica saw it first, and may run on a replica whose watch is a few
   * milliseconds behind: reconciling from the older view would decide on what the event changed
   * without seeing it. The wait is bounded; past it the job runs anyway and asks for another look.
   * Returns whether the cache caught up.
   */
  private async catchUpWith(cause: WorkCause): Promise<boolean> {
    const cache = this.cacheFor(cause.kind);
    if (!cache) return true;
    const seen = () =>
      cacheHasSeen(
        cause,
        cache.get(cause.name, cause.namespace || undefined)?.metadata?.resourceVersion,
        cache.lastResourceVersion,
      );
    if (seen()) return true;
    const deadline = Date.now() + CACHE_CATCH_UP_MS;
    while (!seen()) {
      if (Date.now() >= deadline) {
        this.metrics.cacheCatchUp.inc({ outcome: "timeout" });
        return false;
      }
      await new Promise((r) => setTimeout(r, 10));
    }
    this.metrics.cacheCatchUp.inc({ outcome: "waited" });
    return true;
  }

  private cacheFor(kind: CauseKind): VersionedCache | undefined {
    const c = this.caches;
    if (!c) return undefined;
    const byKind: Record<CauseKind, VersionedCache> = {
      PipelineRun: c.runs,
      AffinityPolicy: c.policies,
      StatefulSet: c.placeholderSets,
      Pod: c.placeholderPods,
      Node: c.nodes,
      Namespace: c.namespaces,
      Event: c.failedCreates,
    };
    return byKind[kind];
  }

  /** Redis emptied without a reconnect (FLUSHALL, failover to an empty replica): its jobs are gone. */
  private async resyncIfRedisLostItsKeys(): Promise<void> {
    let lost: boolean | undefined;
    try {
      lost = await this.queue?.lostItsKeys();
    } catch {
      return; // Redis down: the reconnect resyncs
    }
    // The first check only learns (or sets) the marker: start() resynced already.
    const first = !this.markerSeen;
    this.markerSeen = true;
    if (!lost || first) return;
    this.logger.info("redis lost its keys; resyncing work from the cluster");
    this.resync("redis-empty");
  }
  private markerSeen = false;

  /** Level-triggered safety net: enqueue everything that may still need work. */
  /**
   * The periodic safety net needs one replica per period, not all: the queue collapses only jobs not yet
   * run, so every replica enqueueing every run would cost each run one job per replica per period.
   * The claim expires a little before the next period, so timer drift never skips one.
   */
  private async periodicResync(periodMs: number): Promise<void> {
    let mine = true;
    try {
      mine = (await this.queue?.claim("periodic-resync", Math.floor(periodMs * 0.9))) ?? true;
    } catch {
      // Redis unreachable: resync anyway; the enqueues wait for Redis like any other.
    }
    if (mine) this.resync("periodic");
  }

  resync(reason: "start" | "periodic" | "redis-reconnect" | "redis-empty"): void {
    const caches = this.caches;
    if (!caches) return;
    this.metrics.resyncs.inc({ reason });
    let runs = 0;
    for (const run of caches.runs.list()) {
      if (run.metadata.annotations?.[CLEANED_UP_ANNOTATION] === "true") continue;
      this.enqueueRun(run, true);
      runs++;
    }
    for (const p of caches.policies.list())
      this.enqueue(
        { kind: "policy", namespace: p.metadata.namespace, name: p.metadata.name },
        { resync: true },
      );
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

  /**
   * Graceful shutdown (SIGTERM), so a rolling update fails no admission and loses no job:
   * 1. fail /readyz, and keep answering admissions for `drainMs` while the apiserver and Services stop
   *    sending requests here (a terminating pod leaves the Service's ready endpoints at once; an
   *    admission already on its way still gets its answer);
   * 2. stop taking jobs and let the active ones finish (BullMQ's worker close waits for them; one cut
   *    short by the grace period is handed back by BullMQ's stalled-job check);
   * 3. close the server once its in-flight requests are answered.
   */
  async shutdown(drainMs: number): Promise<void> {
    this.draining = true;
    this.logger.info({ drainMs }, "draining: readiness failed, still answering admissions");
    await new Promise((resolve) => setTimeout(resolve, drainMs));
    await this.stop();
  }

  async stop(): Promise<void> {
    for (const t of this.timers) clearInterval(t);
    await this.certificates?.stop(true);
    await this.queue?.close();
    if (this.caches) await stopCaches(this.caches);
    this.adminServer?.close();
    this.metricsServer?.close();
    this.metricsServer?.closeIdleConnections();
    await new Promise<void>((resolve) => {
      if (!this.server) return resolve();
      this.server.close(() => resolve());
      // Idle kept-alive connections would hold close() open for the apiserver's idle timeout.
      this.server.closeIdleConnections();
    });
  }
}
