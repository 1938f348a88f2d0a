// Keeps the webhook's TLS material in one Secret that every replica shares. Replicas race to create or
// rotate it; the API server decides the winner (create fails with 409 AlreadyExists, a replace carrying
// a stale resourceVersion fails with 409 Conflict) and the losers adopt what the winner wrote.

import type * as k8s from "@kubernetes/client-node";
import type { Logger } from "pino";
import {
  type Bundle,
  caNeedsRotation,
  generateCertificateAuthority,
  generateServingCertificate,
  keyMatchesCertificate,
  needsRotation,
  splitHosts,
} from "./certificates.js";

export type { Bundle } from "./certificates.js";

/** The CA's private key is stored too (under `ca.key`): without it a rotation would have to replace the CA. */
interface StoredBundle extends Partial<Bundle> {
  caKeyPem?: string;
}

const KEYS = { caPem: "ca.crt", caKeyPem: "ca.key", certPem: "tls.crt", keyPem: "tls.key" } as const;
/** Each attempt either returns or lost a race to another replica; more losses in a row than this is a bug. */
const MAX_ATTEMPTS = 5;

export interface CertificateManagerOptions {
  core: k8s.CoreV1Api;
  /** Namespace of the Secret (the controller's own). */
  namespace: string;
  /** Default "tekton-affinity-webhook-tls". */
  secretName?: string;
  /** Names the serving certificate must cover: DNS names (e.g. "svc.ns.svc") and/or IP addresses. */
  hosts: string[];
  /** Default 3650. */
  caValidityDays?: number;
  /** Default 365. */
  servingValidityDays?: number;
  logger: Logger;
}

/** The value for a webhook configuration's `clientConfig.caBundle`. */
export function caBundle(bundle: Bundle): string {
  return Buffer.from(bundle.caPem).toString("base64");
}

function statusCode(err: unknown): number | undefined {
  return (err as { code?: number } | undefined)?.code;
}

/** Callers get the serving material and CA certificate only; the CA's key stays in the Secret. */
function served(stored: StoredBundle): Bundle {
  return { caPem: stored.caPem!, certPem: stored.certPem!, keyPem: stored.keyPem! };
}

function fromSecret(secret: k8s.V1Secret): StoredBundle {
  const data = secret.data ?? {};
  const get = (key: string) => {
    const value = data[key];
    return value ? Buffer.from(value, "base64").toString("utf8") : undefined;
  };
  return {
    caPem: get(KEYS.caPem),
    caKeyPem: get(KEYS.caKeyPem),
    certPem: get(KEYS.certPem),
    keyPem: get(KEYS.keyPem),
  };
}

function toData(stored: Required<StoredBundle>): Record<string, string> {
  const b64 = (s: string) => Buffer.from(s).toString("base64");
  return {
    [KEYS.caPem]: b64(stored.caPem),
    [KEYS.caKeyPem]: b64(stored.caKeyPem),
    [KEYS.certPem]: b64(stored.certPem),
    [KEYS.keyPem]: b64(stored.keyPem),
  };
}

export class CertificateManager {
  private readonly core: k8s.CoreV1Api;
  private readonly namespace: string;
  private readonly secretName: string;
  private readonly hosts: string[];
  private readonly caValidityDays: number;
  private readonly servingValidityDays: number;
  private readonly log: Logger;
  private readonly listeners: ((bundle: Bundle) => void)[] = [];
  private current: Bundle | undefined;
  private inflight: Promise<Bundle> | undefined;
  private timer: NodeJS.Timeout | undefined;

  constructor(opts: CertificateManagerOptions) {
    if (opts.hosts.length === 0) throw new Error("CertificateManager needs at least one host");
    this.core = opts.core;
    this.namespace = opts.namespace;
    this.secretName = opts.secretName ?? "tekton-affinity-webhook-tls";
    this.hosts = opts.hosts;
    this.caValidityDays = opts.caValidityDays ?? 3650;
    this.servingValidityDays = opts.servingValidityDays ?? 365;
    this.log = opts.logger.child({ secret: `${opts.namespace}/${this.secretName}` });
  }

  /** Called with the new bundle whenever a later ensure() finds it differs from the previous one. */
  onChange(listener: (bundle: Bundle) => void): void {
    this.listeners.push(listener);
  }

  /** Re-runs ensure() every intervalMs; failures are logged and retried on the next tick. */
  start(intervalMs = 60_000): void {
    if (this.timer) return;
    this.timer = setInterval(() => {
      this.ensure().catch((err) => this.log.error({ err }, "webhook certificate check failed"));
    }, intervalMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  /** Returns a valid bundle from the Secret, creating or rotating it first if needed. */
  ensure(): Promise<Bundle> {
    // One reconciliation at a time per process; concurrent callers share it.
    this.inflight ??= this.reconcile().finally(() => {
      this.inflight = undefined;
    });
    return this.inflight;
  }

  private async reconcile(): Promise<Bundle> {
    const bundle = await this.converge();
    const previous = this.current;
    this.current = bundle;
    if (previous && (previous.certPem !== bundle.certPem || previous.caPem !== bundle.caPem)) {
      this.log.info("webhook certificate changed");
      for (const listener of this.listeners) {
        try {
          listener(bundle);
        } catch (err) {
          this.log.error({ err }, "webhook certificate change listener failed");
        }
      }
    }
    return bundle;
  }

  private async converge(): Promise<Bundle> {
    for (let attempt = 1; attempt <= MAX_ATTEMPTS; attempt++) {
      const secret = await this.read();
      if (!secret) {
        const fresh = await this.generate(undefined);
        try {
          await this.core.createNamespacedSecret({
            namespace: this.namespace,
            body: {
              metadata: { name: this.secretName, namespace: this.namespace },
              type: "kubernetes.io/tls",
              data: toData(fresh),
            },
          });
          this.log.info("created webhook certificate secret");
          return served(fresh);
        } catch (err) {
          if (statusCode(err) !== 409) throw err;
          this.log.info("another replica created the webhook certificate secret first; using theirs");
          continue;
        }
      }

      const stored = fromSecret(secret);
      const reason = needsRotation(stored, new Date(), { hosts: this.hosts });
      if (!reason) return served(stored);

      this.log.info({ reason }, "rotating webhook certificate");
      const fresh = await this.generate(stored);
      try {
        await this.core.replaceNamespacedSecret({
          name: this.secretName,
          namespace: this.namespace,
          body: {
            ...secret,
            metadata: { ...secret.metadata, resourceVersion: secret.metadata?.resourceVersion },
            data: { ...secret.data, ...toData(fresh) },
          },
        });
        return served(fresh);
      } catch (err) {
        if (statusCode(err) !== 409) throw err;
        this.log.info("another replica rotated the webhook certificate first; using theirs");
      }
    }
    throw new Error(
      `webhook certificate secret ${this.namespace}/${this.secretName} still contended after ${MAX_ATTEMPTS} attempts`,
    );
  }

  private async read(): Promise<k8s.V1Secret | undefined> {
    try {
      return await this.core.readNamespacedSecret({ name: this.secretName, namespace: this.namespace });
    } catch (err) {
      if (statusCode(err) === 404) return undefined;
      throw err;
    }
  }

  /** A new serving certificate, signed by the stored CA unless that CA is missing, unusable or expiring. */
  private async generate(stored: StoredBundle | undefined): Promise<Required<StoredBundle>> {
    const now = new Date();
    let ca =
      stored?.caPem &&
      stored.caKeyPem &&
      !caNeedsRotation(stored.caPem, now) &&
      keyMatchesCertificate(stored.caPem, stored.caKeyPem)
        ? { certPem: stored.caPem, keyPem: stored.caKeyPem }
        : undefined;
    if (!ca) {
      this.log.info("generating a new webhook CA");
      ca = await generateCertificateAuthority({
        commonName: "tekton-affinity-webhook-ca",
        validityDays: this.caValidityDays,
      });
    }
    const serving = await generateServingCertificate(ca, {
      ...splitHosts(this.hosts),
      validityDays: this.servingValidityDays,
    });
    return { caPem: ca.certPem, caKeyPem: ca.keyPem, certPem: serving.certPem, keyPem: serving.keyPem };
  }
}
