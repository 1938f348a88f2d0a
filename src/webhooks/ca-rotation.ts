// The webhook TLS material's next step, decided from what the shared Secret holds and what every live
// replica reports (their Leases), without I/O. Replacing a CA is the one change that can fail admissions:
// the apiserver must trust a replica's serving certificate at every instant, while replicas each pick up
// the Secret on their own tick. So a CA is replaced in three steps, each taken only when every live
// replica has caught up with the previous one:
//
//   stage-ca     a new CA is generated beside the current one; the trust bundle (the webhook
//                configurations' caBundle) becomes old + new. Serving certificates are unchanged.
//   promote-ca   once every replica has published old + new: serving certificates are signed by the
//                new CA, which becomes the current one. The trust bundle still holds both.
//   drop-old-ca  once every replica serves a certificate signed by the new CA: trust only the new CA.
//
// A serving certificate that merely expires or stops fitting its hosts is renewed under the current CA
// at once: the trust bundle already holds that CA.

import { createHash, X509Certificate } from "node:crypto";
import { caNeedsRotation, keyMatchesCertificate, needsRotation } from "./certificates.js";

/** What the Secret holds (PEM text), each part possibly missing or unusable. */
export interface StoredTls {
  caPem?: string;
  caKeyPem?: string;
  certPem?: string;
  keyPem?: string;
  /** The CAs the apiserver should trust, concatenated; absent in Secrets written before rotation in steps. */
  trustPem?: string;
  /** A CA staged by stage-ca, not yet signing anything. */
  nextCaPem?: string;
  nextCaKeyPem?: string;
  /** An operator asked for a new CA (the Secret's rotate-ca annotation). */
  rotateRequested?: boolean;
  /** When the last step was taken (the Secret's annotation); steps wait at least minStepMs after it. */
  lastStepAt?: Date;
}

/** What a live replica last reported: fingerprints of the trust bundle it published and the certificate it serves. */
export interface ReplicaReport {
  id: string;
  trusts: string;
  serves: string;
}

export type TlsStep =
  | { kind: "keep" }
  | { kind: "wait"; reason: string }
  | { kind: "create"; reason: string }
  | { kind: "stage-ca"; reason: string }
  | { kind: "promote-ca" }
  | { kind: "drop-old-ca" }
  | { kind: "trust-ca" }
  | { kind: "renew-serving"; reason: string };

export interface TlsStepOptions {
  hosts: string[];
  /** The least time between two CA steps, so the apiserver has seen one before the next (its webhook
   * configuration informer lags a little behind our patch). */
  minStepMs: number;
}

/** A short, stable name for PEM text, as replicas report it in their Leases. */
export function fingerprint(pem: string | undefined): string {
  return createHash("sha256")
    .update(pem ?? "")
    .digest("hex")
    .slice(0, 16);
}

/** The certificates in a PEM bundle, each as its own PEM block. */
export function splitPemBundle(bundle: string | undefined): string[] {
  return (bundle ?? "").match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n?/g) ?? [];
}

function normalized(pem: string): string {
  return pem.trim();
}

/** Whether `bundle` holds `cert` (compared as PEM text). */
export function bundleHolds(bundle: string | undefined, cert: string | undefined): boolean {
  if (!cert) return false;
  return splitPemBundle(bundle).some((c) => normalized(c) === normalized(cert));
}

/** The trust bundle in effect: Secrets written before rotation in steps trusted their one CA. */
export function effectiveTrust(stored: StoredTls): string {
  return stored.trustPem ?? stored.caPem ?? "";
}

/** Why a CA certificate cannot even be trusted (as opposed to expiring), or undefined. */
function caCertificateUnusable(caPem: string | undefined): string | undefined {
  if (!caPem) return "CA certificate missing";
  try {
    if (!new X509Certificate(caPem).ca) return "CA certificate is not a CA";
  } catch (err) {
    return `CA certificate cannot be parsed: ${(err as Error).message}`;
  }
  return undefined;
}

function lagging(replicas: ReplicaReport[], has: (r: ReplicaReport) => boolean): string | undefined {
  const behind = replicas.filter((r) => !has(r)).map((r) => r.id);
  return behind.length ? behind.sort().join(", ") : undefined;
}

export function decideTlsStep(
  stored: StoredTls | undefined,
  now: Date,
  replicas: ReplicaReport[],
  opts: TlsStepOptions,
): TlsStep {
  if (!stored?.caPem || !stored.certPem || !stored.keyPem) return { kind: "create", reason: "missing" };
  // Nothing to overlap with: a CA certificate that cannot be parsed verifies nothing today either.
  const unusable = caCertificateUnusable(stored.caPem);
  if (unusable) return { kind: "create", reason: unusable };

  const trust = effectiveTrust(stored);
  const sinceLastStep = stored.lastStepAt ? now.getTime() - stored.lastStepAt.getTime() : Infinity;
  const tooSoon = sinceLastStep < opts.minStepMs;

  if (stored.nextCaPem) {
    if (
      caNeedsRotation(stored.nextCaPem, now) ||
      !stored.nextCaKeyPem ||
      !keyMatchesCertificate(stored.nextCaPem, stored.nextCaKeyPem)
    )
      return { kind: "stage-ca", reason: "the staged CA is unusable" };
    if (!bundleHolds(trust, stored.nextCaPem) || !bundleHolds(trust, stored.caPem))
      return { kind: "stage-ca", reason: "the trust bundle lost the staged CA" };
    const behind = lagging(replicas, (r) => r.trusts === fingerprint(trust));
    if (behind) return { kind: "wait", reason: `replicas not yet publishing the new CA: ${behind}` };
    if (tooSoon) return { kind: "wait", reason: "letting the apiserver see the new CA" };
    return { kind: "promote-ca" };
  }

  // The CA signs but is not trusted (a Secret edited by hand): trust it beside the others first.
  if (!bundleHolds(trust, stored.caPem)) return { kind: "trust-ca" };

  const servingReason = needsRotation(
    { caPem: stored.caPem, certPem: stored.certPem, keyPem: stored.keyPem },
    now,
    opts,
  );
  const caReason = caNeedsRotation(stored.caPem, now);
  const caKeyUsable = !!stored.caKeyPem && keyMatchesCertificate(stored.caPem, stored.caKeyPem);
  if (servingReason && servingReason !== caReason && caKeyUsable)
    return { kind: "renew-serving", reason: servingReason };

  if (splitPemBundle(trust).length > 1) {
    const behind = lagging(replicas, (r) => r.serves === fingerprint(stored.certPem));
    if (behind) return { kind: "wait", reason: `replicas not yet serving the new certificate: ${behind}` };
    if (tooSoon)
      return { kind: "wait", reason: "letting every replica's connections move to the new certificate" };
    return { kind: "drop-old-ca" };
  }

  if (caReason) return { kind: "stage-ca", reason: caReason };
  if (!caKeyUsable)
    return { kind: "stage-ca", reason: "the CA's private key is missing or does not match it" };
  if (stored.rotateRequested) return { kind: "stage-ca", reason: "an operator asked for a new CA" };
  return { kind: "keep" };
}
