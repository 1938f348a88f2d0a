import { X509Certificate } from "node:crypto";
import { once } from "node:events";
import https from "node:https";
import type { AddressInfo } from "node:net";
import { expect } from "chai";
import {
  type Bundle,
  type CertificateAndKey,
  certificateExpiry,
  generateCertificateAuthority,
  generateServingCertificate,
  needsRotation,
} from "../../src/webhooks/certificates.js";

const DAY_MS = 24 * 60 * 60 * 1000;
const hosts = ["svc.ns.svc", "127.0.0.1"];

/** GETs https://127.0.0.1:port/ trusting only `caPem`; resolves with the body, rejects on TLS failure. */
function get(port: number, caPem: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = https.get({ host: "127.0.0.1", port, path: "/", ca: caPem, agent: false }, (res) => {
      let body = "";
      res.on("data", (chunk) => {
        body += chunk;
      });
      res.on("end", () => resolve(body));
    });
    req.on("error", reject);
  });
}

describe("webhook certificates", () => {
  let ca: CertificateAndKey;
  let serving: CertificateAndKey;
  let bundle: Bundle;

  before(async () => {
    ca = await generateCertificateAuthority({ commonName: "test-ca", validityDays: 3650 });
    serving = await generateServingCertificate(ca, {
      dnsNames: ["svc.ns.svc"],
      ipAddresses: ["127.0.0.1"],
      validityDays: 365,
    });
    bundle = { caPem: ca.certPem, certPem: serving.certPem, keyPem: serving.keyPem };
  });

  it("generates a self-signed CA certificate with a PKCS#8 key", () => {
    const caCert = new X509Certificate(ca.certPem);
    expect(caCert.ca).to.equal(true);
    expect(caCert.subject).to.equal("CN=test-ca");
    expect(caCert.verify(caCert.publicKey)).to.equal(true);
    expect(ca.keyPem).to.match(
      /^-----BEGIN PRIVATE KEY-----\n[A-Za-z0-9+/=\n]+\n-----END PRIVATE KEY-----\n$/,
    );
    expect(ca.certPem).to.match(/-----END CERTIFICATE-----\n$/);
    expect(caCert.publicKey.asymmetricKeyDetails?.namedCurve).to.equal("prime256v1");
  });

  it("signs a serving certificate covering the DNS names and IPs", () => {
    const caCert = new X509Certificate(ca.certPem);
    const cert = new X509Certificate(serving.certPem);
    expect(cert.ca).to.equal(false);
    expect(cert.verify(caCert.publicKey)).to.equal(true);
    expect(cert.checkIssued(caCert)).to.equal(true);
    expect(cert.checkHost("svc.ns.svc")).to.equal("svc.ns.svc");
    expect(cert.checkIP("127.0.0.1")).to.equal("127.0.0.1");
    expect(cert.checkHost("other.ns.svc")).to.equal(undefined);
    expect(cert.keyUsage).to.deep.equal(["1.3.6.1.5.5.7.3.1"]); // extKeyUsage serverAuth
    expect(serving.keyPem).to.match(/^-----BEGIN PRIVATE KEY-----/);
  });

  it("reports the expiry of a certificate", () => {
    const expiry = certificateExpiry(serving.certPem).getTime();
    expect(expiry).to.be.closeTo(Date.now() + 365 * DAY_MS, 60_000);
  });

  it("serves HTTPS that a client trusting only the CA accepts", async () => {
    const server = https.createServer({ cert: serving.certPem, key: serving.keyPem }, (_req, res) => {
      res.end("ok");
    });
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    try {
      const { port } = server.address() as AddressInfo;
      expect(await get(port, ca.certPem)).to.equal("ok");

      // The same request trusting a different CA must fail, so the success above is the chain's doing.
      const otherCa = await generateCertificateAuthority({ commonName: "other-ca", validityDays: 1 });
      let error: (Error & { code?: string }) | undefined;
      await get(port, otherCa.certPem).catch((err) => {
        error = err;
      });
      expect(error?.code).to.equal("UNABLE_TO_VERIFY_LEAF_SIGNATURE");
    } finally {
      server.close();
    }
  });

  describe("needsRotation", () => {
    it("is undefined for a fresh bundle covering every host", () => {
      expect(needsRotation(bundle, new Date(), { hosts })).to.equal(undefined);
    });

    it("reports a missing bundle or part", () => {
      expect(needsRotation(undefined, new Date(), { hosts })).to.equal("missing");
      expect(needsRotation({ ...bundle, keyPem: "" }, new Date(), { hosts })).to.equal("missing");
    });

    it("rotates once less than a third of the lifetime is left", () => {
      const expiry = certificateExpiry(serving.certPem);
      const lifetime = expiry.getTime() - new Date(new X509Certificate(serving.certPem).validFrom).getTime();
      const justBefore = new Date(expiry.getTime() - lifetime / 3 - DAY_MS);
      const justAfter = new Date(expiry.getTime() - lifetime / 3 + DAY_MS);
      expect(needsRotation(bundle, justBefore, { hosts })).to.equal(undefined);
      expect(needsRotation(bundle, justAfter, { hosts })).to.equal(
        `serving certificate expires at ${expiry.toISOString()}, within the rotation window of 1/3 of its lifetime`,
      );
    });

    it("rotates when the CA itself is expiring", async () => {
      const shortCa = await generateCertificateAuthority({ commonName: "short", validityDays: 3 });
      const cert = await generateServingCertificate(shortCa, {
        dnsNames: ["svc.ns.svc"],
        ipAddresses: ["127.0.0.1"],
        validityDays: 365,
      });
      // The serving certificate never outlives its CA.
      expect(certificateExpiry(cert.certPem).getTime()).to.equal(
        certificateExpiry(shortCa.certPem).getTime(),
      );
      const reason = needsRotation({ caPem: shortCa.certPem, ...cert }, new Date(Date.now() + 2.5 * DAY_MS), {
        hosts,
      });
      expect(reason).to.match(/^CA certificate expires at .*, within the rotation window of 1\/3/);
    });

    it("reports a host the certificate does not cover", () => {
      expect(needsRotation(bundle, new Date(), { hosts: [...hosts, "127.0.0.2"] })).to.equal(
        "does not cover host 127.0.0.2",
      );
      expect(needsRotation(bundle, new Date(), { hosts: ["other.ns.svc"] })).to.equal(
        "does not cover host other.ns.svc",
      );
    });

    it("reports a serving certificate from another CA or with the wrong key", async () => {
      const otherCa = await generateCertificateAuthority({ commonName: "other-ca", validityDays: 10 });
      expect(needsRotation({ ...bundle, caPem: otherCa.certPem }, new Date(), { hosts })).to.equal(
        "serving certificate is not signed by the CA",
      );
      expect(needsRotation({ ...bundle, keyPem: ca.keyPem }, new Date(), { hosts })).to.equal(
        "private key is unreadable or does not match the serving certificate",
      );
    });
  });
});
