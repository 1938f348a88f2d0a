import { X509Certificate } from "node:crypto";
import { expect } from "chai";
import {
  bundleHolds,
  decideTlsStep,
  fingerprint,
  type ReplicaReport,
  type StoredTls,
  splitPemBundle,
} from "../../src/webhooks/ca-rotation.js";
import { applyTlsStep, type Generation } from "../../src/webhooks/certificate-manager.js";
import { generateCertificateAuthority } from "../../src/webhooks/certificates.js";

const DAY_MS = 24 * 60 * 60 * 1000;
const g: Generation = { hosts: ["svc.ns.svc", "127.0.0.1"], caValidityDays: 3650, servingValidityDays: 365 };
const opts = { hosts: g.hosts, minStepMs: 1000 };
const now = new Date();
const later = (ms: number) => new Date(now.getTime() + ms);

async function fresh(): Promise<StoredTls> {
  return { ...(await applyTlsStep({ kind: "create", reason: "test" }, undefined, g)), lastStepAt: now };
}

/** What a replica that has caught up with `s` reports. */
function caughtUp(id: string, s: StoredTls): ReplicaReport {
  return { id, trusts: fingerprint(s.trustPem ?? s.caPem), serves: fingerprint(s.certPem) };
}

describe("decideTlsStep (webhook TLS, CA rotation in steps)", () => {
  it("creates everything when the Secret is missing or its CA certificate cannot be read", async () => {
    expect(decideTlsStep(undefined, now, [], opts).kind).to.equal("create");
    const s = await fresh();
    expect(decideTlsStep({ ...s, caPem: "garbage" }, now, [], opts)).to.deep.include({ kind: "create" });
  });

  it("keeps a good Secret, including one written before steps existed (no trust bundle key)", async () => {
    const s = await fresh();
    expect(decideTlsStep(s, now, [], opts).kind).to.equal("keep");
    expect(decideTlsStep({ ...s, trustPem: undefined }, now, [], opts).kind).to.equal("keep");
  });

  it("renews a serving certificate that no longer covers its hosts under the same CA, at once", async () => {
    const s = await fresh();
    const step = decideTlsStep(s, now, [], { ...opts, hosts: ["other.svc"] });
    expect(step).to.deep.equal({ kind: "renew-serving", reason: "does not cover host other.svc" });
  });

  it("stages a new CA when asked, when the CA expires, or when its key is lost", async () => {
    const s = await fresh();
    expect(decideTlsStep({ ...s, rotateRequested: true }, now, [], opts).kind).to.equal("stage-ca");
    expect(decideTlsStep(s, later(3000 * DAY_MS), [], opts).kind).to.equal("stage-ca");
    const other = await generateCertificateAuthority({ commonName: "x", validityDays: 1 });
    expect(decideTlsStep({ ...s, caKeyPem: other.keyPem }, now, [], opts).kind).to.equal("stage-ca");
  });

  it("promotes the staged CA only when every live replica publishes both CAs, and not sooner than minStepMs", async () => {
    const s = await fresh();
    const staged = {
      ...(await applyTlsStep({ kind: "stage-ca", reason: "test" }, s, g)),
      lastStepAt: now,
    };
    expect(splitPemBundle(staged.trustPem)).to.have.length(2);
    expect(staged.certPem).to.equal(s.certPem);
    const behind = [caughtUp("a", staged), caughtUp("b", s)];
    expect(decideTlsStep(staged, later(5000), behind, opts)).to.deep.equal({
      kind: "wait",
      reason: "replicas not yet publishing the new CA: b",
    });
    const all = [caughtUp("a", staged), caughtUp("b", staged)];
    expect(decideTlsStep(staged, later(500), all, opts).kind).to.equal("wait");
    expect(decideTlsStep(staged, later(5000), all, opts).kind).to.equal("promote-ca");
  });

  it("drops the old CA only when every live replica serves a certificate from the new one", async () => {
    const s = await fresh();
    const staged = await applyTlsStep({ kind: "stage-ca", reason: "test" }, s, g);
    const promoted = { ...(await applyTlsStep({ kind: "promote-ca" }, staged, g)), lastStepAt: now };
    expect(promoted.caPem).to.equal(staged.nextCaPem);
    expect(bundleHolds(promoted.trustPem, s.caPem)).to.equal(true);
    const stale = [caughtUp("a", promoted), caughtUp("b", staged)];
    expect(decideTlsStep(promoted, later(5000), stale, opts)).to.deep.equal({
      kind: "wait",
      reason: "replicas not yet serving the new certificate: b",
    });
    const all = [caughtUp("a", promoted), caughtUp("b", promoted)];
    expect(decideTlsStep(promoted, later(5000), all, opts).kind).to.equal("drop-old-ca");
    const dropped = await applyTlsStep({ kind: "drop-old-ca" }, promoted, g);
    expect(splitPemBundle(dropped.trustPem)).to.deep.equal([promoted.caPem]);
  });

  it("trusts a signing CA missing from the trust bundle before anything else", async () => {
    const s = await fresh();
    const other = await fresh();
    expect(decideTlsStep({ ...s, trustPem: other.caPem }, now, [], opts).kind).to.equal("trust-ca");
  });
});

/**
 * A model of three replicas and the apiserver. Each tick one replica (in random order) reads the Secret,
 * takes a step if one is due, then serves what the Secret holds and publishes its trust bundle, as
 * CertificateManager does. The checker: at every instant, every replica's serving certificate is signed
 * by a CA the apiserver trusts; otherwise an admission to that replica fails.
 */
async function simulate(
  strategy: (s: StoredTls, t: Date, replicas: ReplicaReport[]) => Promise<StoredTls | undefined>,
  seed: number,
): Promise<{ violations: string[]; initial: StoredTls; final: StoredTls; steps: string[] }> {
  let random = seed;
  const next = () => {
    random = (random * 1103515245 + 12345) % 2 ** 31;
    return random / 2 ** 31;
  };
  let secret = await fresh();
  const initial = secret;
  const ids = ["a", "b", "c"];
  const views = new Map(ids.map((id) => [id, secret]));
  let apiserverTrust = secret.trustPem!;
  const violations: string[] = [];
  const steps: string[] = [];
  const check = (when: string) => {
    for (const [id, view] of views) {
      const cert = new X509Certificate(view.certPem!);
      const trusted = splitPemBundle(apiserverTrust).some((ca) =>
        cert.verify(new X509Certificate(ca).publicKey),
      );
      if (!trusted)
        violations.push(`${when}: replica ${id} serves a certificate the apiserver does not trust`);
    }
  };
  let t = now.getTime();
  secret = { ...secret, rotateRequested: true };
  for (let tick = 0; tick < 120; tick++) {
    t += 400;
    const id = ids[Math.floor(next() * ids.length)]!;
    const reports = ids.map((r) => caughtUp(r, views.get(r)!));
    const written = await strategy(secret, new Date(t), reports);
    if (written) {
      steps.push(decideTlsStep(secret, new Date(t), reports, opts).kind);
      secret = { ...written, lastStepAt: new Date(t), rotateRequested: false };
    }
    views.set(id, secret); // it serves what the Secret holds now...
    check(`tick ${tick}, ${id} reloaded`);
    apiserverTrust = secret.trustPem ?? secret.caPem!; // ...and publishes its trust bundle
    check(`tick ${tick}, ${id} published`);
  }
  return { violations, initial, final: secret, steps };
}

const inSteps = async (s: StoredTls, t: Date, replicas: ReplicaReport[]) => {
  const step = decideTlsStep(s, t, replicas, opts);
  return step.kind === "keep" || step.kind === "wait" ? undefined : applyTlsStep(step, s, g);
};

describe("CA rotation across replicas (model)", function () {
  this.timeout(30_000);

  for (const seed of [1, 7, 42]) {
    it(`rotates the CA with every replica's certificate trusted at every instant (seed ${seed})`, async () => {
      const { violations, initial, final, steps } = await simulate(inSteps, seed);
      expect(violations).to.deep.equal([]);
      expect(steps).to.deep.equal(["stage-ca", "promote-ca", "drop-old-ca"]);
      expect(final.caPem).not.to.equal(initial.caPem);
      expect(splitPemBundle(final.trustPem)).to.deep.equal([final.caPem]);
    });
  }

  it("the checker catches a CA replaced in one step (what a single-step rotation does)", async () => {
    let done = false;
    const oneStep = async (s: StoredTls) => {
      if (done || !s.rotateRequested) return undefined;
      done = true;
      return applyTlsStep({ kind: "create", reason: "one step" }, s, g);
    };
    const { violations } = await simulate(oneStep, 7);
    expect(violations.length).to.be.greaterThan(0);
  });
});
