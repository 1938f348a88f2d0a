// Keeps the webhook's TLS material in one Secret that every replica shares. Replicas race to create or
// rotate it; the API server decides the winner (create fails with 409 AlreadyExists, a replace carrying
// a stale resourceVersion fails with 409 Conflict) and the losers adopt what the winner wrote. What to
// do next is decided by decideTlsStep (ca-rotation.ts) from the Secret and the replicas' Leases; this
// class only reads, generates and writes.

import type * as k8s from "@kubernetes/client-node";
import type { Logger } from "pino";
import { LAST_STEP_ANNOTATION, ROTATE_CA_ANNOTATION } from "../api/constants.js";
import { statusCode } from "../kube/clients.js";
import {
  decideTlsStep,
  effectiveTrust,
  fingerprint,
  type StoredTls,
  splitPemBundle,
  type TlsStep,
} from "./ca-rotation.js";
import {
  type Bundle,
  type CertificateAndKey,
  generateCertificateAuthority,
  generateServingCertificate,
  splitHosts,
} from "./certificates.js";
import { ReplicaLeases } from "./replica-leases.js";

export type { Bundle } from "./certificates.js";

const KEYS = {
  caPem: "ca.crt",
  caKeyPem: "ca.key",
  certPem: "tls.crt",
  keyPem: "tls.key",
  trustPem: "ca-bundle.crt",
  nextCaPem: "ca-next.crt",
  nextCaKeyPem: "ca-next.key",
} as const;
/** Each attempt either returns or lost a race to another replica; more losses in a row than this is a bug. */
const MAX_ATTEMPTS = 5;

export interface CertificateManagerOptions {
  core: k8s.CoreV1Api;
  /** Where replicas report what they trust and serve; without it CA steps wait only minStepMs. */
  coordination?: k8s.CoordinationV1Api;
  /** This replica's name in its Lease. Default: "replica". */
  replicaId?: string;
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
  /** How often start() checks the Secret and renews the Lease. Default 60 s. */
  checkIntervalMs?: number;
  logger: Logger;
}

/** The value for a webhook configuration's `clientConfig.caBundle`: every CA the apiserver should trust. */
export function caBundle(bundle: Bundle): string {
  return Buffer.from(bundle.caPem).toString("base64");
}

/** Callers get the trust bundle and serving material only; CA keys stay in the Secret. */
function served(stored: StoredTls): Bundle {
  return { caPem: effectiveTrust(stored), certPem: stored.certPem!, keyPem: stored.keyPem! };
}

function fromSecret(secret: k8s.V1Secret): StoredTls {
  const data = secret.data ?? {};
  const get = (key: string) => {
    const value = data[key];
    return value ? Buffer.from(value, "base64").toString("utf8") : undefined;
  };
  const annotations = secret.metadata?.annotations ?? {};
  const lastStep = annotations[LAST_STEP_ANNOTATION];
  return {
    caPem: get(KEYS.caPem),
    caKeyPem: get(KEYS.caKeyPem),
    certPem: get(KEYS.certPem),
    keyPem: get(KEYS.keyPem),
    trustPem: get(KEYS.trustPem),
    nextCaPem: get(KEYS.nextCaPem),
    nextCaKeyPem: get(KEYS.nextCaKeyPem),
    rotateRequested: ROTATE_CA_ANNOTATION in annotations,
    lastStepAt: lastStep && !Number.isNaN(Date.parse(lastStep)) ? new Date(lastStep) : undefined,
  };
}

/** The Secret's data with our keys replaced by `stored`'s (other keys are kept as they are). */
function toData(previous: Record<string, string> | undefined, stored: StoredTls): Record<string, string> {
  const data = { ...previous };
  for (const [field, key] of Object.entries(KEYS)) {
    const value = stored[field as keyof typeof KEYS];
    if (value) data[key] = Buffer.from(value).toString("base64");
    else delete data[key];
  }
  return data;
}

export interface Generation {
  hosts: string[];
  caValidityDays: number;
  servingValidityDays: number;
}

function newCa(g: Generation): Promise<CertificateAndKey> {
  return generateCertificateAuthority({
    commonName: "tekton-affinity-webhook-ca",
    validityDays: g.caValidityDays,
  });
}

/** CA and serving material: a new serving certificate signed by `ca`. */
async function withServing(ca: CertificateAndKey, g: Generation): Promise<StoredTls> {
  const serving = await generateServingCertificate(ca, {
    ...splitHosts(g.hosts),
    validityDays: g.servingValidityDays,
  });
  return { caPem: ca.certPem, caKeyPem: ca.keyPem, certPem: serving.certPem, keyPem: serving.keyPem };
}

/** The Secret's contents after `step` (generating what the step needs). */
export async function applyTlsStep(
  step: Exclude<TlsStep, { kind: "keep" | "wait" }>,
  stored: StoredTls | undefined,
  g: Generation,
): Promise<StoredTls> {
  const s = stored ?? {};
  switch (step.kind) {
    case "create": {
      const fresh = await newCa(g);
      return { ...(await withServing(fresh, g)), trustPem: fresh.certPem };
    }
    case "stage-ca": {
      const next = await newCa(g);
      return { ...s, nextCaPem: next.certPem, nextCaKeyPem: next.keyPem, trustPem: s.caPem! + next.certPem };
    }
    case "promote-ca": {
      const promoted = await withServing({ certPem: s.nextCaPem!, keyPem: s.nextCaKeyPem! }, g);
      return { ...s, ...promoted, nextCaPem: undefined, nextCaKeyPem: undefined };
    }
    case "drop-old-ca":
      return { ...s, trustPem: s.caPem };
    case "trust-ca":
      return { ...s, trustPem: effectiveTrust(s) + s.caPem! };
    case "renew-serving":
      return { ...s, ...(await withServing({ certPem: s.caPem!, keyPem: s.caKeyPem! }, g)) };
  }
}

export class CertificateManager {
  private readonly core: k8s.CoreV1Api;
  private readonly namespace: string;
  private readonly secretName: string;
  private readonly hosts: string[];
  private readonly generation: Generation;
  private readonly checkIntervalMs: number;
  private readonly leases?: ReplicaLeases;
  private readonly log: Logger;
  private readonly listeners: ((bundle: Bundle) => void | Promise<void>)[] = [];
  private current: Bundle | undefined;
  private inflight: Promise<Bundle> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private lastWait = "";

  constructor(opts: CertificateManagerOptions) {
    if (opts.hosts.length === 0) throw new Error("CertificateManager needs at least one host");
    this.core = opts.core;
    this.namespace = opts.namespace;
    this.secretName = opts.secretName ?? "tekton-affinity-webhook-tls";
    this.hosts = opts.hosts;
    this.generation = {
      hosts: opts.hosts,
      caValidityDays: opts.caValidityDays ?? 3650,
      servingValidityDays: opts.servingValidityDays ?? 365,
    };
    this.checkIntervalMs = opts.checkIntervalMs ?? 60_000;
    if (opts.coordination)
      this.leases = new ReplicaLeases({
        coordination: opts.coordination,
        namespace: opts.namespace,
        replicaId: opts.replicaId ?? "replica",
        leaseDurationSeconds: Math.max(3, Math.ceil((3 * this.checkIntervalMs) / 1000)),
      });
    this.log = opts.logger.child({ secret: `${opts.namespace}/${this.secretName}` });
  }

  /** Called with the new bundle whenever a later ensure() finds it differs from the previous one; the
   * replica reports the new bundle as published only once every listener has finished. */
  onChange(listener: (bundle: Bundle) => void | Promise<void>): void {
    this.listeners.push(listener);
  }

  /** Re-runs ensure() every check interval; failures are logged and retried on the next tick. */
  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => {
      this.ensure().catch((err) => this.log.error({ err: String(err) }, "webhook certificate check failed"));
    }, this.checkIntervalMs);
    this.timer.unref();
  }

  /** Stops checking; with `forget`, deletes this replica's Lease so no rotation waits for it. */
  async stop(forget = false): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    if (forget) await this.leases?.remove().catch(() => undefined);
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
      this.log.info({ trustedCas: splitPemBundle(bundle.caPem).length }, "webhook certificate changed");
      for (const listener of this.listeners) {
        try {
          await listener(bundle);
        } catch (err) {
          this.log.error({ err: String(err) }, "webhook certificate change listener failed");
        }
      }
    }
    // A report that fails only holds a CA rotation back until the next tick; it never stops serving.
    await this.leases
      ?.report(fingerprint(bundle.caPem), fingerprint(bundle.certPem))
      .catch((err) => this.log.warn({ err: String(err) }, "could not renew this replica's webhook Lease"));
    return bundle;
  }

  private async converge(): Promise<Bundle> {
    for (let attempt = 1; attempt <= MAX_ATTEMPTS; attempt++) {
      const secret = await this.read();
      const stored = secret ? fromSecret(secret) : undefined;
      const now = new Date();
      const replicas =
        stored?.nextCaPem || splitPemBundle(stored?.trustPem).length > 1 ? await this.liveReplicas() : [];
      const step = decideTlsStep(stored, now, replicas, {
        hosts: this.hosts,
        minStepMs: this.checkIntervalMs,
      });
      if (step.kind === "keep" || step.kind === "wait") {
        if (step.kind === "wait" && step.reason !== this.lastWait)
          this.log.info({ reason: step.reason }, "CA rotation waiting");
        this.lastWait = step.kind === "wait" ? step.reason : "";
        return served(stored!);
      }
      this.log.info(
        { step: step.kind, reason: "reason" in step ? step.reason : undefined },
        "webhook TLS step",
      );
      const next = await applyTlsStep(step, stored, this.generation);
      try {
        if (!secret) await this.create(next, now);
        else await this.replace(secret, next, now, step.kind === "stage-ca");
        return served(next);
      } catch (err) {
        if (statusCode(err) !== 409) throw err;
        this.log.info("another replica changed the webhook certificate secret first; using theirs");
      }
    }
    throw new Error(
      `webhook certificate secret ${this.namespace}/${this.secretName} still contended after ${MAX_ATTEMPTS} attempts`,
    );
  }

  private async liveReplicas() {
    return this.leases ? this.leases.live() : [];
  }

  private async create(stored: StoredTls, now: Date): Promise<void> {
    await this.core.createNamespacedSecret({
      namespace: this.namespace,
      body: {
        metadata: {
          name: this.secretName,
          namespace: this.namespace,
          annotations: { [LAST_STEP_ANNOTATION]: now.toISOString() },
        },
        type: "kubernetes.io/tls",
        data: toData(undefined, stored),
      },
    });
    this.log.info("created webhook certificate secret");
  }

  private async replace(
    secret: k8s.V1Secret,
    stored: StoredTls,
    now: Date,
    clearRequest: boolean,
  ): Promise<void> {
    const annotations: Record<string, string> = {
      ...secret.metadata?.annotations,
      [LAST_STEP_ANNOTATION]: now.toISOString(),
    };
    if (clearRequest) delete annotations[ROTATE_CA_ANNOTATION];
    await this.core.replaceNamespacedSecret({
      name: this.secretName,
      namespace: this.namespace,
      // Fenced by resourceVersion: a replica that lost the race gets 409 and decides again.
      body: { ...secret, metadata: { ...secret.metadata, annotations }, data: toData(secret.data, stored) },
    });
  }

  private async read(): Promise<k8s.V1Secret | undefined> {
    try {
      return await this.core.readNamespacedSecret({ name: this.secretName, namespace: this.namespace });
    } catch (err) {
      if (statusCode(err) === 404) return undefined;
      throw err;
    }
  }
}
