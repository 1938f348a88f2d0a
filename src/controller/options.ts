// Controller configuration. Every option is a flag with an environment variable and a default,
// shown by `tekton-affinity controller --help`.

import { hostname } from "node:os";
import type { AffinityPolicySpec, Mode } from "../api/types.js";

export interface ControllerOptions {
  kubeconfig?: string;
  redisUrl: string;
  redisPassword?: string;
  redisTls: boolean;
  /** "host:port,host:port" of Redis Sentinels; with sentinelName, replaces redisUrl's host. */
  redisSentinels?: string;
  redisSentinelName?: string;
  queuePrefix: string;
  webhookPort: number;
  /** The apiserver reaches the webhooks at https://<host>:<webhookPort> instead of the Service. */
  webhookUrlHost?: string;
  /** Namespace the controller runs in (its Secret, Service). */
  namespace: string;
  serviceName: string;
  tektonNamespace: string;
  /** Operator's cluster default mode for namespaces without a policy; unset = leave them alone. */
  defaultMode?: Mode;
  concurrency: number;
  replicaId: string;
  logLevel: string;
  notReadyGraceSeconds: number;
  settleSeconds: number;
  resyncSeconds: number;
  /** Keep the webhook configurations in the cluster in sync (caBundle, URL). */
  manageWebhookConfigurations: boolean;
}

export const DEFAULTS = {
  redisUrl: "redis://127.0.0.1:6379",
  queuePrefix: "tekton-affinity",
  webhookPort: 9443,
  namespace: "tekton-affinity",
  serviceName: "tekton-affinity-webhook",
  tektonNamespace: "tekton-pipelines",
  concurrency: 8,
  logLevel: "info",
  notReadyGraceSeconds: 30,
  settleSeconds: 10,
  resyncSeconds: 300,
} as const;

export function defaultReplicaId(): string {
  return `${hostname()}-${process.pid}`;
}

export function clusterDefaultSpec(o: ControllerOptions): AffinityPolicySpec | undefined {
  return o.defaultMode ? { mode: o.defaultMode } : undefined;
}

/** Redis connection options for ioredis from the URL, password, TLS and Sentinel settings. */
export function redisConnection(o: ControllerOptions) {
  const url = new URL(o.redisUrl);
  if (url.protocol !== "redis:" && url.protocol !== "rediss:") {
    throw new Error(`--redis-url must start with redis:// or rediss://, got "${o.redisUrl}"`);
  }
  const password = o.redisPassword ?? (url.password ? decodeURIComponent(url.password) : undefined);
  const tls = o.redisTls || url.protocol === "rediss:" ? {} : undefined;
  const db = url.pathname.length > 1 ? Number(url.pathname.slice(1)) : undefined;
  if (o.redisSentinels) {
    if (!o.redisSentinelName)
      throw new Error("--redis-sentinels needs --redis-sentinel-name (the master group name)");
    const sentinels = o.redisSentinels.split(",").map((hp) => {
      const [host, port] = hp.trim().split(":");
      return { host: host!, port: Number(port ?? 26379) };
    });
    return { sentinels, name: o.redisSentinelName, password, tls, db };
  }
  return {
    host: url.hostname,
    port: Number(url.port || 6379),
    username: url.username || undefined,
    password,
    tls,
    db,
  };
}
