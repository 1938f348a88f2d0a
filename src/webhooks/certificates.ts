// Certificates for the admission webhook's HTTPS server: a private CA (whose certificate becomes the
// webhook configurations' caBundle) and a serving certificate it signs. ECDSA P-256 throughout; private
// keys are PKCS#8 PEM ("PRIVATE KEY"), which Node's tls/https accept directly.

import { createPrivateKey, X509Certificate as NodeX509Certificate, webcrypto } from "node:crypto";
import { isIP } from "node:net";
import * as x509 from "@peculiar/x509";

x509.cryptoProvider.set(webcrypto as unknown as Crypto);

const ALGORITHM = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" } as const;
const DAY_MS = 24 * 60 * 60 * 1000;
/** Certificates start a little in the past so a peer whose clock is slightly behind accepts them. */
const BACKDATE_MS = 5 * 60 * 1000;
/** Rotate once less than this fraction of a certificate's lifetime remains. */
const ROTATION_FRACTION = 1 / 3;

export interface CertificateAndKey {
  certPem: string;
  keyPem: string;
}

/** What the HTTPS server and the webhook configurations need. */
export interface Bundle {
  caPem: string;
  certPem: string;
  keyPem: string;
}

/** PEM text ending in a newline, as openssl and most tools write it (so bundles concatenate safely). */
function pem(text: string): string {
  return text.endsWith("\n") ? text : `${text}\n`;
}

async function generateKeyPair(): Promise<CryptoKeyPair> {
  return (await webcrypto.subtle.generateKey(ALGORITHM, true, ["sign", "verify"])) as CryptoKeyPair;
}

async function privateKeyPem(key: CryptoKey): Promise<string> {
  const der = await webcrypto.subtle.exportKey("pkcs8", key as webcrypto.CryptoKey);
  return pem(x509.PemConverter.encode(der, "PRIVATE KEY"));
}

async function importPrivateKey(keyPem: string): Promise<CryptoKey> {
  const der = x509.PemConverter.decodeFirst(keyPem);
  return (await webcrypto.subtle.importKey("pkcs8", der, ALGORITHM, false, ["sign"])) as CryptoKey;
}

function validity(now: Date, days: number, notAfterCap?: Date): { notBefore: Date; notAfter: Date } {
  const notBefore = new Date(now.getTime() - BACKDATE_MS);
  let notAfter = new Date(now.getTime() + days * DAY_MS);
  if (notAfterCap && notAfter > notAfterCap) notAfter = notAfterCap;
  return { notBefore, notAfter };
}

/** X.500 names are comma-separated RDNs; keep a caller's name from injecting extra attributes. */
function commonNameDn(commonName: string): string {
  return `CN=${commonName.replace(/([,+"\\<>;=#])/g, "\\$1")}`;
}

export async function generateCertificateAuthority(opts: {
  commonName: string;
  validityDays: number;
}): Promise<CertificateAndKey> {
  const keys = await generateKeyPair();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    name: commonNameDn(opts.commonName),
    keys,
    signingAlgorithm: ALGORITHM,
    ...validity(new Date(), opts.validityDays),
    extensions: [
      new x509.BasicConstraintsExtension(true, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { certPem: pem(cert.toString("pem")), keyPem: await privateKeyPem(keys.privateKey) };
}

/** A serving certificate signed by `ca`; it never outlives the CA. */
export async function generateServingCertificate(
  ca: CertificateAndKey,
  opts: { dnsNames: string[]; ipAddresses: string[]; validityDays: number },
): Promise<CertificateAndKey> {
  if (opts.dnsNames.length + opts.ipAddresses.length === 0) {
    throw new Error("a serving certificate needs at least one DNS name or IP address");
  }
  const caCert = new x509.X509Certificate(ca.certPem);
  const caKey = await importPrivateKey(ca.keyPem);
  const keys = await generateKeyPair();
  const names: x509.JsonGeneralNames = [
    ...opts.dnsNames.map((value) => ({ type: "dns" as const, value })),
    ...opts.ipAddresses.map((value) => ({ type: "ip" as const, value })),
  ];
  const cert = await x509.X509CertificateGenerator.create({
    subject: commonNameDn(opts.dnsNames[0] ?? opts.ipAddresses[0]!),
    issuer: caCert.subject,
    publicKey: keys.publicKey,
    signingKey: caKey,
    signingAlgorithm: ALGORITHM,
    ...validity(new Date(), opts.validityDays, caCert.notAfter),
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(
        x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment,
        true,
      ),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
      new x509.SubjectAlternativeNameExtension(names),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      await x509.AuthorityKeyIdentifierExtension.create(caCert.publicKey),
    ],
  });
  return { certPem: pem(cert.toString("pem")), keyPem: await privateKeyPem(keys.privateKey) };
}

export function certificateExpiry(certPem: string): Date {
  return new Date(new NodeX509Certificate(certPem).validTo);
}

/** Splits hosts into SAN entries: IP literals (per node:net isIP) and DNS names. */
export function splitHosts(hosts: string[]): { dnsNames: string[]; ipAddresses: string[] } {
  return {
    dnsNames: hosts.filter((h) => isIP(h) === 0),
    ipAddresses: hosts.filter((h) => isIP(h) !== 0),
  };
}

function expiringReason(what: string, cert: NodeX509Certificate, now: Date): string | undefined {
  const notBefore = new Date(cert.validFrom).getTime();
  const notAfter = new Date(cert.validTo);
  const lifetime = notAfter.getTime() - notBefore;
  if (notAfter.getTime() - now.getTime() < lifetime * ROTATION_FRACTION) {
    return `${what} expires at ${notAfter.toISOString()}, within the rotation window of 1/3 of its lifetime`;
  }
  return undefined;
}

/** Whether keyPem is the private key of certPem's public key (false when either cannot be parsed). */
export function keyMatchesCertificate(certPem: string, keyPem: string): boolean {
  try {
    return new NodeX509Certificate(certPem).checkPrivateKey(createPrivateKey(keyPem));
  } catch {
    return false;
  }
}

/** Why the CA certificate must be replaced, or undefined when it is still good. */
export function caNeedsRotation(caPem: string | undefined, now: Date): string | undefined {
  if (!caPem) return "CA certificate missing";
  let ca: NodeX509Certificate;
  try {
    ca = new NodeX509Certificate(caPem);
  } catch (err) {
    return `CA certificate cannot be parsed: ${(err as Error).message}`;
  }
  if (!ca.ca) return "CA certificate is not a CA";
  return expiringReason("CA certificate", ca, now);
}

/**
 * Why `bundle` must be (partly) regenerated, as a sentence for the log, or undefined when it is fine:
 * missing or unparsable parts, a CA or serving certificate with less than 1/3 of its lifetime left, a
 * serving certificate not signed by the CA or not matching its key, or one that does not cover a host.
 */
export function needsRotation(
  bundle: Partial<Bundle> | undefined,
  now: Date,
  opts: { hosts: string[] },
): string | undefined {
  if (!bundle?.caPem || !bundle.certPem || !bundle.keyPem) return "missing";
  const caReason = caNeedsRotation(bundle.caPem, now);
  if (caReason) return caReason;
  let cert: NodeX509Certificate;
  try {
    cert = new NodeX509Certificate(bundle.certPem);
  } catch (err) {
    return `serving certificate cannot be parsed: ${(err as Error).message}`;
  }
  const ca = new NodeX509Certificate(bundle.caPem);
  if (!cert.checkIssued(ca) || !cert.verify(ca.publicKey))
    return "serving certificate is not signed by the CA";
  if (!keyMatchesCertificate(bundle.certPem, bundle.keyPem)) {
    return "private key is unreadable or does not match the serving certificate";
  }
  const expiring = expiringReason("serving certificate", cert, now);
  if (expiring) return expiring;
  for (const host of opts.hosts) {
    // Like Go's TLS (kube-apiserver), trust only the SAN, never the subject's CN.
    const covered =
      isIP(host) === 0
        ? cert.checkHost(host, { subject: "never" }) !== undefined
        : cert.checkIP(host) !== undefined;
    if (!covered) return `does not cover host ${host}`;
  }
  return undefined;
}
