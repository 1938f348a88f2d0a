// HTTPS server for the admission webhooks plus /healthz and /readyz (metrics have their own port).
// Every admission handler answers from in-memory caches: no Redis call, and no API call, except the
// webhooks' one read on a cache miss (see Controller), which a synced replica almost never has.

import { createServer, type Server } from "node:https";
import type { V1Pod } from "@kubernetes/client-node";
import express, { type Request, type Response } from "express";
import type { Logger } from "pino";
import type { AffinityPolicy, PipelineRun } from "../api/types.js";
import type { Metrics } from "../metrics.js";
import { type AdmissionDecision, type AdmissionReview, reviewResponse } from "./admission.js";

export const PATHS = {
  pipelineRuns: "/mutate/pipelineruns",
  pods: "/mutate/pods",
  policies: "/validate/affinitypolicies",
} as const;

export interface WebhookHandlers {
  pipelineRun: (run: PipelineRun) => AdmissionDecision | Promise<AdmissionDecision>;
  pod: (pod: V1Pod, namespace: string) => AdmissionDecision | Promise<AdmissionDecision>;
  policy: (policy: AffinityPolicy) => AdmissionDecision;
  /** True once the informer caches have synced (before that the webhooks would answer from nothing),
   * and until shutdown begins. */
  ready: () => boolean;
  /** Why ready() is false, for /readyz. */
  notReadyReason?: () => string;
  /** True while shutting down: every answer then closes its connection. */
  draining?: () => boolean;
  /** A problem to report in /readyz without failing it (the webhooks must keep serving). */
  readyWarning?: () => string | undefined;
}

export interface TlsMaterial {
  certPem: string;
  keyPem: string;
}

export function createApp(handlers: WebhookHandlers, metrics: Metrics, logger: Logger) {
  const app = express();
  app.disable("x-powered-by");
  // An ETag is a hash of every answer, for caches no admission answer goes through.
  app.disable("etag");
  app.use(express.json({ limit: "10mb" }));
  // While draining, answer and close: the apiserver then opens its next connection to another
  // replica, instead of keeping an idle one to this replica that would be cut when it exits (a request
  // written on it at that instant gets EOF, and is not retried).
  app.use((_req, res, next) => {
    if (handlers.draining?.()) res.setHeader("Connection", "close");
    next();
  });

  const admit =
    <T>(
      name: string,
      decide: (obj: T, review: AdmissionReview<T>) => AdmissionDecision | Promise<AdmissionDecision>,
    ) =>
    async (req: Request, res: Response) => {
      const started = process.hrtime.bigint();
      const review = req.body as AdmissionReview<T>;
      const request = review?.request;
      if (!request?.uid) {
        res.status(400).json({ error: "expected an admission.k8s.io/v1 AdmissionReview with a request" });
        return;
      }
      let decision: AdmissionDecision;
      try {
        decision = await decide(request.object as T, review);
      } catch (err) {
        // A bug here must not block the request: answer allowed, loudly.
        logger.error(
          { webhook: name, err: String(err), uid: request.uid },
          "webhook handler failed; allowing",
        );
        decision = { allowed: true, warnings: [`tekton-affinity ${name} webhook failed: ${String(err)}`] };
      }
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      metrics.webhookDuration.observe({ webhook: name, allowed: String(decision.allowed) }, seconds);
      logger.debug(
        { webhook: name, namespace: request.namespace, allowed: decision.allowed, seconds },
        "admission",
      );
      res.json(reviewResponse(request.uid, decision));
    };

  app.post(
    PATHS.pipelineRuns,
    admit<PipelineRun>("pipelineruns", (run) => handlers.pipelineRun(run)),
  );
  app.post(
    PATHS.pods,
    admit<V1Pod>("pods", (pod, review) =>
      handlers.pod(pod, review.request?.namespace ?? pod.metadata?.namespace ?? ""),
    ),
  );
  app.post(
    PATHS.policies,
    admit<AffinityPolicy>("affinitypolicies", (p) => handlers.policy(p)),
  );
  app.get("/healthz", (_req, res) => {
    res.send("ok");
  });
  app.get("/readyz", (_req, res) => {
    const warning = handlers.readyWarning?.();
    if (handlers.ready()) res.send(warning ? `ok, but: ${warning}` : "ok");
    else res.status(503).send(handlers.notReadyReason?.() ?? "informer caches not synced");
  });
  return app;
}

/**
 * How long the apiserver keeps an idle webhook connection for reuse: Go's transport default, which
 * Kubernetes' webhook client keeps.
 */
export const APISERVER_IDLE_CONNECTION_MS = 90_000;

export function listen(
  app: ReturnType<typeof express>,
  tls: TlsMaterial,
  port: number,
  host = "0.0.0.0",
): Promise<Server> {
  const server = createServer({ cert: tls.certPem, key: tls.keyPem }, app);
  // Let the apiserver close idle connections, never us. With Node's default (5 s) we would close one the
  // apiserver still counts as idle-and-reusable; a request it writes at that instant gets EOF, is not
  // retried (POST), and for a task pod Tekton fails the TaskRun (PodCreationFailed).
  server.keepAliveTimeout = APISERVER_IDLE_CONNECTION_MS + 30_000;
  // A request's headers must still arrive promptly on a connection that may idle this long.
  server.headersTimeout = server.keepAliveTimeout + 1_000;
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => resolve(server));
  });
}
