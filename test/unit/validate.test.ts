import { expect } from "chai";
import type { AffinityPolicySpec } from "../../src/api/types.js";
import { parseQuantity, validatePolicy } from "../../src/api/validate.js";
import { policy } from "./helpers.js";

function errorsFor(spec: Partial<AffinityPolicySpec>) {
  return validatePolicy(policy("p", spec));
}

function only(spec: Partial<AffinityPolicySpec>) {
  const errors = errorsFor(spec);
  expect(errors, JSON.stringify(errors)).to.have.length(1);
  return errors[0]!;
}

describe("validatePolicy", () => {
  it("accepts a valid, fully specified policy", () => {
    expect(
      errorsFor({
        mode: "isolate-pipelinerun",
        topologyKey: "topology.kubernetes.io/zone",
        isolation: { scope: "namespace" },
        pipelineRunSelector: {
          matchLabels: { "example.com/team": "ci_1.0", empty: "" },
          matchExpressions: [
            { key: "tier", operator: "In", values: ["a", "b"] },
            { key: "skip", operator: "DoesNotExist" },
          ],
        },
        placeholder: {
          serviceAccountName: "builder",
          priorityClassName: "high-priority",
          imagePullSecrets: [{ name: "regcred" }],
          nodeSelector: { "kubernetes.io/os": "linux" },
          tolerations: [
            { key: "dedicated", operator: "Equal", value: "ci", effect: "NoSchedule" },
            {
              key: "node.kubernetes.io/unreachable",
              operator: "Exists",
              effect: "NoExecute",
              tolerationSeconds: 30,
            },
            { operator: "Exists" },
          ],
          resources: {
            requests: { cpu: "100m", memory: "1Gi", "example.com/x": 1 },
            limits: { cpu: 0.5, memory: "2e9" },
          },
          image: "registry.k8s.io/pause:3.10",
        },
      }),
    ).to.deep.equal([]);
    expect(errorsFor({ mode: "disabled" })).to.deep.equal([]);
  });

  describe("label selector", () => {
    it("rejects bad keys", () => {
      const e = only({ pipelineRunSelector: { matchLabels: { "Bad_Prefix/x": "v" } } });
      expect(e.field).to.equal('spec.pipelineRunSelector.matchLabels["Bad_Prefix/x"]');
      expect(e.message).to.contain("DNS subdomain").and.contain("e.g.");
      expect(
        only({ pipelineRunSelector: { matchLabels: { [`${"a".repeat(64)}`]: "v" } } }).message,
      ).to.contain("63");
      expect(
        only({ pipelineRunSelector: { matchExpressions: [{ key: "-x", operator: "Exists" }] } }).field,
      ).to.equal("spec.pipelineRunSelector.matchExpressions[0].key");
    });

    it("rejects bad values", () => {
      const e = only({ pipelineRunSelector: { matchLabels: { team: "no spaces" } } });
      expect(e.message).to.contain('"no spaces"');
      const e2 = only({
        pipelineRunSelector: {
          matchExpressions: [{ key: "team", operator: "In", values: ["ok", "x".repeat(64)] }],
        },
      });
      expect(e2.field).to.equal("spec.pipelineRunSelector.matchExpressions[0].values[1]");
    });

    it("requires values for In/NotIn and none for Exists/DoesNotExist", () => {
      const e = only({
        pipelineRunSelector: { matchExpressions: [{ key: "team", operator: "NotIn", values: [] }] },
      });
      expect(e.field).to.equal("spec.pipelineRunSelector.matchExpressions[0].values");
      expect(e.message).to.contain("at least one value").and.contain("DoesNotExist");
      const e2 = only({
        pipelineRunSelector: { matchExpressions: [{ key: "team", operator: "Exists", values: ["a"] }] },
      });
      expect(e2.message).to.contain("takes no values").and.contain("operator In");
    });
  });

  it("checks nodeSelector keys and values", () => {
    const errors = errorsFor({ placeholder: { nodeSelector: { "bad key": "ok", good: "bad value!" } } });
    expect(errors.map((e) => e.field)).to.deep.equal([
      'spec.placeholder.nodeSelector["bad key"]',
      'spec.placeholder.nodeSelector["good"]',
    ]);
  });

  describe("tolerations", () => {
    it("rejects a value with operator Exists", () => {
      const e = only({ placeholder: { tolerations: [{ key: "k", operator: "Exists", value: "v" }] } });
      expect(e.field).to.equal("spec.placeholder.tolerations[0].value");
      expect(e.message).to.contain("Equal");
    });
    it("rejects an empty key without Exists", () => {
      const e = only({ placeholder: { tolerations: [{ value: "v" }] } });
      expect(e.field).to.equal("spec.placeholder.tolerations[0].operator");
    });
    it("rejects an unknown effect", () => {
      const e = only({ placeholder: { tolerations: [{ key: "k", effect: "Sometimes" as "NoSchedule" }] } });
      expect(e.field).to.equal("spec.placeholder.tolerations[0].effect");
      expect(e.message).to.contain("NoExecute");
    });
    it("allows tolerationSeconds only with NoExecute", () => {
      const e = only({
        placeholder: {
          tolerations: [{ key: "k", operator: "Exists", effect: "NoSchedule", tolerationSeconds: 5 }],
        },
      });
      expect(e.field).to.equal("spec.placeholder.tolerations[0].tolerationSeconds");
      expect(e.message).to.contain("NoExecute");
    });
  });

  describe("resources", () => {
    it("rejects quantities that do not parse, with the documented message", () => {
      const e = only({ placeholder: { resources: { requests: { cpu: "12 pizzas" } } } });
      expect(e).to.deep.equal({
        field: "spec.placeholder.resources.requests.cpu",
        message:
          '"12 pizzas" is not a Kubernetes quantity; use a number with an optional suffix such as 100m, 0.5 or 1Gi',
      });
      expect(only({ placeholder: { resources: { limits: { memory: "1GB" } } } }).field).to.equal(
        "spec.placeholder.resources.limits.memory",
      );
    });
    it("rejects negative quantities and requests above limits", () => {
      expect(only({ placeholder: { resources: { requests: { cpu: "-1" } } } }).message).to.contain(
        "negative",
      );
      const e = only({
        placeholder: { resources: { requests: { memory: "2Gi" }, limits: { memory: "1Gi" } } },
      });
      expect(e.field).to.equal("spec.placeholder.resources.requests.memory");
      expect(e.message).to.contain("above limit");
    });
    it("parses the Kubernetes quantity grammar", () => {
      expect(parseQuantity("100m")).to.be.closeTo(0.1, 1e-12);
      expect(parseQuantity("1Gi")).to.equal(2 ** 30);
      expect(parseQuantity("0.5")).to.equal(0.5);
      expect(parseQuantity("1e3")).to.equal(1000);
      expect(parseQuantity(".5k")).to.equal(500);
      expect(parseQuantity("+2E-1")).to.be.closeTo(0.2, 1e-12);
      expect(parseQuantity(3)).to.equal(3);
      for (const bad of ["", "m", "1e3M", "1.2.3", "1 Gi", "1gi", "1KiB", "e3", "1e"]) {
        expect(parseQuantity(bad), bad).to.equal(undefined);
      }
    });
  });

  it("requires DNS-1123 names for service account, priority class and pull secrets", () => {
    const errors = errorsFor({
      placeholder: {
        serviceAccountName: "Builder",
        priorityClassName: "high_priority",
        imagePullSecrets: [{ name: "" }, { name: "ok" }, { name: "no/slash" }],
      },
    });
    expect(errors.map((e) => e.field)).to.deep.equal([
      "spec.placeholder.serviceAccountName",
      "spec.placeholder.priorityClassName",
      "spec.placeholder.imagePullSecrets[0].name",
      "spec.placeholder.imagePullSecrets[2].name",
    ]);
    expect(errors[0]!.message).to.contain('"Builder"').and.contain("lowercase");
  });

  it("requires topologyKey to be a label key", () => {
    const e = only({ topologyKey: "" });
    expect(e.field).to.equal("spec.topologyKey");
    expect(e.message).to.contain("must not be empty");
    expect(only({ topologyKey: "kubernetes.io/" }).message).to.contain("empty name");
  });

  it("rejects an empty or whitespace image", () => {
    const e = only({ placeholder: { image: "   " } });
    expect(e.field).to.equal("spec.placeholder.image");
    expect(e.message).to.contain("registry.k8s.io/pause:3.10");
    expect(only({ placeholder: { image: "a b" } }).message).to.contain("whitespace");
  });
});
