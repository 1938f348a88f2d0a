import { expect } from "chai";
import {
  boundedTemplate,
  capReservation,
  DEFAULT_TENANCY_LIMITS,
  effectiveMaxWaitMs,
  formatDuration,
  imageAllowed,
  parseDuration,
  type TenancyLimits,
  tenancyErrors,
} from "../../src/api/tenancy.js";
import type { AffinityPolicySpec } from "../../src/api/types.js";
import { validateAffinityPolicy } from "../../src/webhooks/policies.js";
import { policy } from "./helpers.js";

const errorsOf = (spec: Partial<AffinityPolicySpec>, limits: TenancyLimits = DEFAULT_TENANCY_LIMITS) =>
  tenancyErrors(policy("p", { mode: "isolate-pipelinerun", ...spec }), limits);

describe("tenancy bounds", () => {
  it("allows the hostname and zone topology keys by default, and names the allowed values otherwise", () => {
    expect(errorsOf({ topologyKey: "kubernetes.io/hostname" })).to.deep.equal([]);
    expect(errorsOf({ topologyKey: "topology.kubernetes.io/zone" })).to.deep.equal([]);
    const [e] = errorsOf({ topologyKey: "kubernetes.io/os" });
    expect(e!.field).to.equal("spec.topologyKey");
    expect(e!.message).to.contain('"kubernetes.io/os" is not allowed');
    expect(e!.message).to.contain('"kubernetes.io/hostname", "topology.kubernetes.io/zone"');
    expect(e!.message).to.contain("--allowed-topology-keys");
    const wide = { ...DEFAULT_TENANCY_LIMITS, allowedTopologyKeys: ["kubernetes.io/os"] };
    expect(errorsOf({ topologyKey: "kubernetes.io/os" }, wide)).to.deep.equal([]);
  });

  it("rejects a priority class the operator did not allow", () => {
    const [e] = errorsOf({ placeholder: { priorityClassName: "system-cluster-critical" } });
    expect(e!.field).to.equal("spec.placeholder.priorityClassName");
    expect(e!.message).to.contain("preempt");
    expect(e!.message).to.contain("(none)");
    const allowed = { ...DEFAULT_TENANCY_LIMITS, allowedPriorityClasses: ["ci-low"] };
    expect(errorsOf({ placeholder: { priorityClassName: "ci-low" } }, allowed)).to.deep.equal([]);
    expect(errorsOf({ placeholder: { priorityClassName: "ci-high" } }, allowed)[0]!.message).to.contain(
      '"ci-low"',
    );
  });

  it("bounds images by registry prefix only when the operator lists registries", () => {
    expect(imageAllowed("anything.example/x:1", [])).to.equal(true);
    expect(imageAllowed("registry.k8s.io/pause:3.10", ["registry.k8s.io"])).to.equal(true);
    expect(imageAllowed("registry.k8s.io.evil.example/pause", ["registry.k8s.io"])).to.equal(false);
    expect(imageAllowed("ghcr.io/acme/pause:1", ["ghcr.io/acme/"])).to.equal(true);
    const limits = { ...DEFAULT_TENANCY_LIMITS, allowedImageRegistries: ["registry.k8s.io"] };
    const [e] = errorsOf({ placeholder: { image: "evil.example/miner:1" } }, limits);
    expect(e!.field).to.equal("spec.placeholder.image");
    expect(e!.message).to.contain('"registry.k8s.io"');
  });

  it("caps placeholder requests and limits per resource", () => {
    expect(
      errorsOf({ placeholder: { resources: { requests: { cpu: "500m", memory: "1Gi" } } } }),
    ).to.deep.equal([]);
    const errors = errorsOf({
      placeholder: { resources: { requests: { cpu: "2" }, limits: { memory: "2Gi" } } },
    });
    expect(errors.map((e) => e.field)).to.deep.equal([
      "spec.placeholder.resources.requests.cpu",
      "spec.placeholder.resources.limits.memory",
    ]);
    expect(errors[0]!.message).to.contain("ceiling of 1");
  });

  it("bounds every resource: one with no ceiling is refused at admission and never given to a placeholder", () => {
    const errors = errorsOf({ placeholder: { resources: { requests: { "nvidia.com/gpu": "8" } } } });
    expect(errors.map((e) => e.field)).to.deep.equal(["spec.placeholder.resources.requests.nvidia.com/gpu"]);
    expect(errors[0]!.message).to.contain("no ceiling").and.contain("--max-placeholder-resources");
    const t = boundedTemplate(
      {
        image: "pause",
        resources: { requests: { cpu: "500m", "nvidia.com/gpu": "8" }, limits: { "nvidia.com/gpu": "8" } },
      } as never,
      DEFAULT_TENANCY_LIMITS,
    );
    expect(t.resources).to.deep.equal({ requests: { cpu: "500m" }, limits: {} });
  });

  it("caps a reservation at the operator's ceiling, and says when it did", () => {
    const gib = 2 ** 30;
    expect(capReservation({ cpuMillis: 2000, memoryBytes: 4 * gib }, DEFAULT_TENANCY_LIMITS)).to.deep.equal({
      requests: { cpuMillis: 2000, memoryBytes: 4 * gib },
      capped: false,
    });
    expect(
      capReservation({ cpuMillis: 64_000, memoryBytes: 512 * gib }, DEFAULT_TENANCY_LIMITS),
    ).to.deep.equal({
      requests: { cpuMillis: 8000, memoryBytes: 32 * gib },
      capped: true,
    });
  });

  it("parses durations and bounds maxWait by the ceiling", () => {
    expect(parseDuration("90s")).to.equal(90_000);
    expect(parseDuration("1h30m")).to.equal(5_400_000);
    expect(parseDuration("250ms")).to.equal(250);
    expect(parseDuration("1.5m")).to.equal(90_000);
    expect(parseDuration("15")).to.equal(undefined);
    expect(parseDuration("fifteen minutes")).to.equal(undefined);
    expect(formatDuration(5_400_000)).to.equal("1h30m");
    expect(formatDuration(90_000)).to.equal("1m30s");
    expect(effectiveMaxWaitMs({ mode: "pipelineruns" }, DEFAULT_TENANCY_LIMITS)).to.equal(30 * 60_000);
    expect(effectiveMaxWaitMs({ mode: "pipelineruns", maxWait: "90s" }, DEFAULT_TENANCY_LIMITS)).to.equal(
      90_000,
    );
    expect(effectiveMaxWaitMs({ mode: "pipelineruns", maxWait: "100h" }, DEFAULT_TENANCY_LIMITS)).to.equal(
      24 * 3_600_000,
    );
    // "0s" passes the CRD pattern; should the webhook not have been there, it means the default.
    expect(effectiveMaxWaitMs({ mode: "pipelineruns", maxWait: "0s" }, DEFAULT_TENANCY_LIMITS)).to.equal(
      30 * 60_000,
    );
    const [e] = errorsOf({ maxWait: "100h" });
    expect(e!.field).to.equal("spec.maxWait");
    expect(e!.message).to.contain("ceiling of 24h");
    expect(errorsOf({ maxWait: "0s" })[0]!.message).to.contain("not a positive duration");
  });

  it("the policy webhook rejects with every field, value and allowed value in one message", () => {
    const decision = validateAffinityPolicy(
      policy("evil", {
        mode: "isolate-pipelinerun",
        topologyKey: "kubernetes.io/os",
        placeholder: { priorityClassName: "system-node-critical" },
      }),
    );
    expect(decision.allowed).to.equal(false);
    expect(decision.message).to.contain("spec.topologyKey");
    expect(decision.message).to.contain("spec.placeholder.priorityClassName");
    expect(decision.message).to.contain('"system-node-critical"');
  });
});
