import { expect } from "chai";
import {
  DEFAULT_PLACEHOLDER_IMAGE,
  effectivePlaceholderTemplate,
  RESTRICTED_CONTAINER_SECURITY_CONTEXT,
} from "../../src/api/placeholder-template.js";
import type { AffinityPolicySpec } from "../../src/api/types.js";
import { run } from "./helpers.js";

const full: AffinityPolicySpec = {
  mode: "workspaces",
  placeholder: {
    serviceAccountName: "policy-sa",
    nodeSelector: { disk: "ssd" },
    tolerations: [{ key: "policy", operator: "Exists" }],
    priorityClassName: "policy-priority",
    securityContext: { runAsNonRoot: true, runAsUser: 1000 },
    imagePullSecrets: [{ name: "policy-pull" }],
    image: "example.com/hold:1",
  },
};

const runPod = {
  nodeSelector: { zone: "a" },
  tolerations: [{ key: "run", operator: "Exists" as const }],
  priorityClassName: "run-priority",
  securityContext: { runAsUser: 2000, runAsNonRoot: true },
  imagePullSecrets: [{ name: "run-pull" }],
};

describe("effectivePlaceholderTemplate", () => {
  it("applies safe defaults with an empty policy and run", () => {
    const t = effectivePlaceholderTemplate({ mode: "pipelineruns" }, run());
    expect(t.image).to.equal(DEFAULT_PLACEHOLDER_IMAGE).and.equal("registry.k8s.io/pause:3.10");
    expect(t.resources).to.deep.equal({ requests: { cpu: "1m", memory: "8Mi" } });
    expect(t.securityContext).to.deep.equal({
      runAsNonRoot: true,
      runAsUser: 65532,
      seccompProfile: { type: "RuntimeDefault" },
    });
    expect(t.serviceAccountName).to.equal(undefined);
    expect(t.nodeSelector).to.equal(undefined);
    expect(t.tolerations).to.equal(undefined);
    expect(t.priorityClassName).to.equal(undefined);
    expect(t.imagePullSecrets).to.equal(undefined);
  });

  it("keeps the restricted defaults when a run sets only fsGroup", () => {
    const r = run();
    r.spec.taskRunTemplate = { podTemplate: { securityContext: { fsGroup: 1000 } } };
    expect(effectivePlaceholderTemplate({ mode: "pipelineruns" }, r).securityContext).to.deep.equal({
      runAsNonRoot: true,
      runAsUser: 65532,
      seccompProfile: { type: "RuntimeDefault" },
      fsGroup: 1000,
    });
  });

  it("takes the run's node affinity, so the placeholder lands where the run's pods may go", () => {
    const nodeAffinity = {
      requiredDuringSchedulingIgnoredDuringExecution: {
        nodeSelectorTerms: [{ matchExpressions: [{ key: "pool", operator: "In", values: ["ci"] }] }],
      },
    };
    const r = run();
    r.spec.taskRunTemplate = { podTemplate: { affinity: { nodeAffinity } } };
    expect(effectivePlaceholderTemplate({ mode: "pipelineruns" }, r).nodeAffinity).to.deep.equal(
      nodeAffinity,
    );
    expect(effectivePlaceholderTemplate({ mode: "pipelineruns" }, run()).nodeAffinity).to.equal(undefined);
  });

  it("exports a restricted container security context", () => {
    expect(RESTRICTED_CONTAINER_SECURITY_CONTEXT).to.deep.equal({
      allowPrivilegeEscalation: false,
      capabilities: { drop: ["ALL"] },
      readOnlyRootFilesystem: true,
    });
  });

  describe("serviceAccountName", () => {
    it("uses the policy's over the run's", () => {
      const t = effectivePlaceholderTemplate(
        full,
        run({}, { taskRunTemplate: { serviceAccountName: "run-sa" } }),
      );
      expect(t.serviceAccountName).to.equal("policy-sa");
    });
    it("inherits the run's taskRunTemplate.serviceAccountName", () => {
      const t = effectivePlaceholderTemplate(
        { mode: "workspaces" },
        run({}, { taskRunTemplate: { serviceAccountName: "run-sa" } }),
      );
      expect(t.serviceAccountName).to.equal("run-sa");
    });
    it("leaves it unset for the namespace default", () => {
      expect(effectivePlaceholderTemplate({ mode: "workspaces" }, run()).serviceAccountName).to.equal(
        undefined,
      );
    });
  });

  describe("run podTemplate wins over the policy", () => {
    const withPod = run({}, { taskRunTemplate: { podTemplate: runPod } });
    const fromPolicy = effectivePlaceholderTemplate(full, run());
    const fromRun = effectivePlaceholderTemplate(full, withPod);

    it("nodeSelector", () => {
      expect(fromPolicy.nodeSelector).to.deep.equal({ disk: "ssd" });
      expect(fromRun.nodeSelector).to.deep.equal({ zone: "a" });
    });
    it("tolerations", () => {
      expect(fromPolicy.tolerations).to.deep.equal([{ key: "policy", operator: "Exists" }]);
      expect(fromRun.tolerations).to.deep.equal([{ key: "run", operator: "Exists" }]);
    });
    it("priorityClassName", () => {
      expect(fromPolicy.priorityClassName).to.equal("policy-priority");
      expect(fromRun.priorityClassName).to.equal("run-priority");
    });
    it("securityContext, merged over the restricted defaults", () => {
      const restricted = { seccompProfile: { type: "RuntimeDefault" } };
      expect(fromPolicy.securityContext).to.deep.equal({
        ...restricted,
        runAsNonRoot: true,
        runAsUser: 1000,
      });
      expect(fromRun.securityContext).to.deep.equal({ ...restricted, runAsUser: 2000, runAsNonRoot: true });
    });
    it("imagePullSecrets", () => {
      expect(fromPolicy.imagePullSecrets).to.deep.equal([{ name: "policy-pull" }]);
      expect(fromRun.imagePullSecrets).to.deep.equal([{ name: "run-pull" }]);
    });
    it("does not alias the inputs", () => {
      fromRun.tolerations![0]!.key = "changed";
      expect(runPod.tolerations[0]!.key).to.equal("run");
    });
  });

  it("uses the policy's image and merges resource requests over the defaults", () => {
    const t = effectivePlaceholderTemplate(
      {
        mode: "workspaces",
        placeholder: { image: "example.com/hold:1", resources: { requests: { cpu: "100m" } } },
      },
      run(),
    );
    expect(t.image).to.equal("example.com/hold:1");
    expect(t.resources).to.deep.equal({ requests: { cpu: "100m", memory: "8Mi" } });
  });

  it("does not add a default request for a resource that only has a limit", () => {
    const t = effectivePlaceholderTemplate(
      { mode: "workspaces", placeholder: { resources: { limits: { memory: "4Mi" } } } },
      run(),
    );
    expect(t.resources).to.deep.equal({ requests: { cpu: "1m" }, limits: { memory: "4Mi" } });
  });
});
