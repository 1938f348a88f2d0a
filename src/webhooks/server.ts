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
import { BodyBudget } from "./body-budget.js";

export const PATHS = {
  pipelineRuns: "/mutate/pipelineruns",
  pipelineRunMarks: "/mutate/pipelineruns/marks",
  pods: "/mutate/pods",
  policies: "/validate/affinitypolicies",
} as const;

/**
 * The largest AdmissionReview the apiserver sends us: its request body limit is 3 MiB, and the
 * policies webhook sees an UPDATE's old object too (stored, so within etcd's 1.5 MiB). Anything bigger
 * is not from the apiserver, and is refused before it is read.
 */
export const MAX_REVIEW_BYTES = 5 * 1024 * 1024;
/** More than an HA control plane's apiservers keep open to one replica; a flood is refused beyond it. */
export const MAX_CONNECTIONS = 512;
/** A request's headers and body must arrive within this: the apiserver sends at once, and gives up at
 * the webhook's timeout (5 s). A slow sender cannot hold a connection's request open longer. */
export const REQUEST_TIMEOUT_MS = 10_000;

/** How a handler's failure is answered: the gate lets the run through ungated (its failurePolicy is
 * Ignore too); the pods and policies webhooks refuse (Fail), with the reason, rather than admit a pod
 * without its placement or a policy nobody checked. */
export type OnHandlerError = "allow" | "deny";

export interface WebhookHandlers {
  pipelineRun: (run: PipelineRun) => AdmissionDecision | Promise<AdmissionDecision>;
  /** An UPDATE of a managed run, by `username`. */
  pipelineRunUpdate?: (run: PipelineRun, old: PipelineRun | undefined, username: string) => AdmissionDecision;
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
  // No inflation: the apiserver never compresses a webhook request, and a small gzip body can inflate to
  // far more than the limit (body-parser counts the inflated bytes, but only after inflating them).
  // At most so many request bytes held at once, per source address and in all (body-budget.ts).
  const budget = new BodyBudget({
    unknownLengthBytes: MAX_REVIEW_BYTES,
    onRefused: (reason) => metrics.webhookRefused.inc({ reason }),
  });
  app.use(budget.middleware());
  app.use(express.json({ limit: MAX_REVIEW_BYTES, inflate: false }));
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
      onError: OnHandlerError,
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
        logger.error(
          { webhook: name, err: String(err), uid: request.uid },
          `webhook handler failed; ${onError === "allow" ? "allowing" : "denying"}`,
        );
        metrics.webhookErrors.inc({ webhook: name });
        decision =
          onError === "allow"
            ? { allowed: true, warnings: [`tekton-affinity ${name} webhook failed: ${String(err)}`] }
            : {
                allowed: false,
                message: `tekton-affinity ${name} webhook failed: ${String(err)}; this is a bug in tekton-affinity, not in your object: retry, and report it if it persists`,
              };
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
    admit<PipelineRun>("pipelineruns", "allow", (run) => handlers.pipelineRun(run)),
  );
  app.post(
    PATHS.pipelineRunMarks,
    admit<PipelineRun>("pipelinerun-marks", "allow", (run, review) =>
      handlers.pipelineRunUpdate
        ? handlers.pipelineRunUpdate(run, review.request?.oldObject, review.request?.userInfo?.username ?? "")
        : { allowed: true },
    ),
  );
  app.post(
    PATHS.pods,
    admit<V1Pod>("pods", "deny", (pod, review) =>
      handlers.pod(pod, review.request?.namespace ?? pod.metadata?.namespace ?? ""),
    ),
  );
  app.post(
    PATHS.policies,
    admit<AffinityPolicy>("affinitypolicies", "deny", (p) => handlers.policy(p)),
  );
  app.get("/healthz", (_req, res) => {
    res.send("ok");
  });
  // A body refused by the parser (too large, compressed, not JSON): its status and a one-line reason, no
  // stack trace. Whoever sent it was not the apiserver, or the apiserver sent what no webhook can read.
  app.use(
    (
      err: { status?: number; type?: string; message?: string },
      req: Request,
      res: Response,
      next: (e?: unknown) => void,
    ) => {
      if (res.headersSent) return next(err);
      const status = err.status && err.status >= 400 && err.status < 500 ? err.status : 500;
      logger.warn({ path: req.path, status, reason: err.type ?? err.message }, "refused a webhook request");
      res.status(status).json({ error: err.message ?? "bad request" });
    },
  );
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
  // A request's headers and body must still arrive promptly on a connection that may idle this long.
  server.headersTimeout = REQUEST_TIMEOUT_MS;
  server.requestTimeout = REQUEST_TIMEOUT_MS;
  server.maxConnections = MAX_CONNECTIONS;
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => resolve(server));
  });
}
