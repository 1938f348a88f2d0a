// Controller configuration. Every option is a flag with an environment variable and a default,
// shown by `tekton-affinity controller --help`.

import { readFileSync } from "node:fs";
import { hostname } from "node:os";
import { DEFAULT_TEKTON_RESOLVERS_NAMESPACE } from "../api/constants.js";
import type { TenancyLimits } from "../api/tenancy.js";
import type { AffinityPolicySpec, Mode } from "../api/types.js";
import { parseQuantity } from "../api/validate.js";

export interface ControllerOptions {
  kubeconfig?: string;
  redisUrl: string;
  redisPassword?: string;
  redisTls: boolean;
  /** PEM file of the CA that signed Redis' certificate (else the system's CAs). */
  redisCaFile?: string;
  /** "host:port,host:port" of Redis Sentinels; with sentinelName, replaces redisUrl's host. */
  redisSentinels?: string;
  redisSentinelName?: string;
  /** Password of the Sentinels themselves (Sentinel's requirepass), when they have one. */
  redisSentinelPassword?: string;
  queuePrefix: string;
  webhookPort: number;
  /** Plain-HTTP port of /metrics; 0 = off. */
  metricsPort: number;
  /** The apiserver reaches the webhooks at https://<host>:<webhookPort> instead of the Service. */
  webhookUrlHost?: string;
  /** Namespace the controller runs in (its Secret, Service). */
  namespace: string;
  serviceName: string;
  tektonNamespace: string;
  /** Namespace of Tekton's resolvers (their cluster-resolver-config). */
  tektonResolversNamespace: string;
  /** Operator's cluster default mode for namespaces without a policy; unset = leave them alone. */
  defaultMode?: Mode;
  concurrency: number;
  replicaId: string;
  logLevel: string;
  notReadyGraceSeconds: number;
  settleSeconds: number;
  resyncSeconds: number;
  /** Port of the bull-board queue UI; 0 = off. */
  adminPort: number;
  adminHost: string;
  /** Keep the webhook configurations' caBundle in sync with the serving certificate. */
  manageWebhookConfigurations: boolean;
  /** Apply the webhook configurations whole, creating them when missing (local clusters, tests); else
   * only patch the caBundle of those the release installed. */
  createWebhookConfigurations: boolean;
  /** How often each replica checks the webhook certificate Secret and renews its Lease; also the least
   * time between two steps of a CA rotation. */
  certificateCheckIntervalMs: number;
  /** The operator's bounds on what namespace owners may ask (docs/security.md). */
  tenancy: TenancyLimits;
}

export const DEFAULTS = {
  redisUrl: "redis://127.0.0.1:6379",
  queuePrefix: "tekton-affinity",
  webhookPort: 9443,
  metricsPort: 9090,
  namespace: "tekton-affinity",
  serviceName: "tekton-affinity-webhook",
  tektonNamespace: "tekton-pipelines",
  tektonResolversNamespace: DEFAULT_TEKTON_RESOLVERS_NAMESPACE,
  concurrency: 8,
  logLevel: "info",
  notReadyGraceSeconds: 30,
  settleSeconds: 10,
  resyncSeconds: 300,
  adminPort: 0,
  adminHost: "127.0.0.1",
  shutdownDrainSeconds: 10,
  certificateCheckIntervalMs: 60_000,
} as const;

/** "a,b, c" -> ["a", "b", "c"]; "" -> []. */
export function parseList(value: string): string[] {
  return value
    .split(",")
    .map((v) => v.trim())
    .filter(Boolean);
}

/** "cpu=1,memory=1Gi" -> { cpu: "1", memory: "1Gi" }, each value a valid quantity. */
export function parseResourceCeilings(flag: string, value: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const entry of parseList(value)) {
    const m = /^([A-Za-z0-9./-]+)=(.+)$/.exec(entry);
    if (!m || parseQuantity(m[2]!) === undefined)
      throw new Error(`${flag} entry "${entry}" is not NAME=QUANTITY, e.g. cpu=1,memory=1Gi`);
    out[m[1]!] = m[2]!;
  }
  return out;
}

export function defaultReplicaId(): string {
  return `${hostname()}-${process.pid}`;
}

export function clusterDefaultSpec(o: ControllerOptions): AffinityPolicySpec | undefined {
  return o.defaultMode ? { mode: o.defaultMode } : undefined;
}

function tlsOptions(caFile: string | undefined): { ca?: string } {
  if (!caFile) return {};
  try {
    return { ca: readFileSync(caFile, "utf8") };
  } catch (err) {
    throw new Error(`--redis-ca-file ${caFile} cannot be read: ${(err as Error).message}`);
  }
}

/** The URL as it may be shown: its password, if any, replaced by ***. Works on a URL that does not
 * parse, which is when it is shown. */
export function redactedUrl(raw: string): string {
  return raw.replace(/^([a-z][a-z0-9+.-]*:\/\/[^/@:]*:)[^/]*@/i, "$1***@");
}

/** Redis connection options for ioredis from the URL, password, TLS and Sentinel settings. */
export function redisConnection(o: ControllerOptions) {
  const shown = redactedUrl(o.redisUrl);
  let url: URL;
  try {
    url = new URL(o.redisUrl);
  } catch {
    throw new Error(
      `--redis-url is not a URL: "${shown}"; use redis://[:PASSWORD@]HOST:PORT[/DB], with the password percent-encoded, or pass it as --redis-password`,
    );
  }
  if (url.protocol !== "redis:" && url.protocol !== "rediss:") {
    throw new Error(`--redis-url must start with redis:// or rediss://, got "${shown}"`);
  }
  if (!url.hostname) throw new Error(`--redis-url has no host: "${shown}"; use redis://HOST:PORT`);
  const password = o.redisPassword ?? (url.password ? decodeURIComponent(url.password) : undefined);
  const tls = o.redisTls || url.protocol === "rediss:" ? tlsOptions(o.redisCaFile) : undefined;
  const dbPath = url.pathname.slice(1);
  if (dbPath && !/^\d+$/.test(dbPath)) {
    throw new Error(`--redis-url path must be a database number such as /0, got "/${dbPath}"`);
  }
  const db = dbPath ? Number(dbPath) : undefined;
  if (o.redisSentinels) {
    if (!o.redisSentinelName)
      throw new Error("--redis-sentinels needs --redis-sentinel-name (the master group name)");
    const sentinels = o.redisSentinels.split(",").map((entry) => {
      const m = /^\[?([^\]]+?)\]?(?::(\d+))?$/.exec(entry.trim());
      if (!m) throw new Error(`--redis-sentinels entry "${entry}" is not HOST or HOST:PORT`);
      return { host: m[1]!, port: m[2] ? Number(m[2]) : 26379 };
    });
    // ioredis applies `tls` to the master only with enableTLSForSentinelMode, and to the Sentinels only
    // as sentinelTLS: without both, --redis-tls would silently be plain TCP in Sentinel mode.
    const secure = tls ? { tls, enableTLSForSentinelMode: true, sentinelTLS: tls } : { tls };
    const sentinelAuth = o.redisSentinelPassword ? { sentinelPassword: o.redisSentinelPassword } : {};
    return { sentinels, name: o.redisSentinelName, password, db, ...secure, ...sentinelAuth };
  }
  return {
    host: url.hostname.replace(/^\[(.*)\]$/, "$1"), // IPv6 literals come bracketed
    port: Number(url.port || 6379),
    username: url.username ? decodeURIComponent(url.username) : undefined,
    password,
    tls,
    db,
  };
}
