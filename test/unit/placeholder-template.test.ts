import { expect } from "chai";
import {
  containerSecurityContext,
  DEFAULT_PLACEHOLDER_IMAGE,
  effectivePlaceholderTemplate,
  onlyWindowsNodes,
  RESTRICTED_CONTAINER_SECURITY_CONTEXT,
  type TektonDefaultTemplate,
} from "../../src/api/placeholder-template.js";
import type { AffinityPolicySpec } from "../../src/api/types.js";
import { parseDefaultPodTemplate } from "../../src/kube/tekton-defaults.js";
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

  it("never runs as root: a run's root identity is for its tasks, the placeholder keeps the restricted one", () => {
    const restricted = { runAsNonRoot: true, runAsUser: 65532, seccompProfile: { type: "RuntimeDefault" } };
    const asRoot = run();
    asRoot.spec.taskRunTemplate = { podTemplate: { securityContext: { runAsUser: 0, fsGroup: 0 } } };
    expect(effectivePlaceholderTemplate({ mode: "pipelineruns" }, asRoot).securityContext).to.deep.equal({
      ...restricted,
      fsGroup: 0,
    });
    const notNonRoot = run();
    notNonRoot.spec.taskRunTemplate = { podTemplate: { securityContext: { runAsNonRoot: false } } };
    expect(effectivePlaceholderTemplate({ mode: "pipelineruns" }, notNonRoot).securityContext).to.deep.equal(
      restricted,
    );
    // A non-root uid the run chose is kept; only root gives way.
    const policyRoot: AffinityPolicySpec = {
      mode: "pipelineruns",
      placeholder: { securityContext: { runAsNonRoot: false, runAsUser: 1000 } },
    };
    expect(effectivePlaceholderTemplate(policyRoot, run()).securityContext).to.deep.equal({
      ...restricted,
      runAsUser: 1000,
    });
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

  describe("Windows nodes", () => {
    const windowsTerm = { key: "kubernetes.io/os", operator: "In", values: ["windows"] };
    const affinity = (...terms: object[][]) => ({
      requiredDuringSchedulingIgnoredDuringExecution: {
        nodeSelectorTerms: terms.map((matchExpressions) => ({ matchExpressions })),
      },
    });

    it("are the only ones a run may use through its nodeSelector, or through every required term", () => {
      expect(onlyWindowsNodes({ "kubernetes.io/os": "windows" }, undefined)).to.equal(true);
      expect(onlyWindowsNodes({ "kubernetes.io/os": "linux" }, undefined)).to.equal(false);
      expect(onlyWindowsNodes(undefined, affinity([windowsTerm]))).to.equal(true);
      expect(
        onlyWindowsNodes(
          undefined,
          affinity([windowsTerm], [windowsTerm, { key: "pool", operator: "Exists" }]),
        ),
      ).to.equal(true);
      // One term that allows Linux nodes: the run may land on Linux.
      expect(
        onlyWindowsNodes(undefined, affinity([windowsTerm], [{ key: "pool", operator: "Exists" }])),
      ).to.equal(false);
      expect(
        onlyWindowsNodes(undefined, affinity([{ ...windowsTerm, values: ["windows", "linux"] }])),
      ).to.equal(false);
      expect(onlyWindowsNodes(undefined, affinity([{ ...windowsTerm, operator: "NotIn" }]))).to.equal(false);
      expect(onlyWindowsNodes(undefined, undefined)).to.equal(false);
    });

    it("get a Windows placeholder: os windows, no Linux-only setting, non-admin, never HostProcess", () => {
      const r = run();
      r.spec.taskRunTemplate = {
        podTemplate: {
          nodeSelector: { "kubernetes.io/os": "windows" },
          securityContext: { fsGroup: 1000, runAsUser: 1000, windowsOptions: { hostProcess: true } } as never,
        },
      };
      const t = effectivePlaceholderTemplate({ mode: "pipelineruns" }, r);
      expect(t.os).to.equal("windows");
      expect(t.securityContext).to.deep.equal({
        runAsNonRoot: true,
        windowsOptions: { runAsUserName: "ContainerUser" },
      });
      expect(containerSecurityContext(t)).to.equal(undefined);
    });

    it("keep the user the run names; Linux runs keep the restricted contexts", () => {
      const r = run();
      r.spec.taskRunTemplate = {
        podTemplate: {
          affinity: { nodeAffinity: affinity([windowsTerm]) },
          securityContext: { windowsOptions: { runAsUserName: "Builder" } } as never,
        },
      };
      expect(effectivePlaceholderTemplate({ mode: "pipelineruns" }, r).securityContext).to.deep.equal({
        runAsNonRoot: true,
        windowsOptions: { runAsUserName: "Builder" },
      });
      const linux = effectivePlaceholderTemplate({ mode: "pipelineruns" }, run());
      expect(linux.os).to.equal(undefined);
      expect(containerSecurityContext(linux)).to.deep.equal(RESTRICTED_CONTAINER_SECURITY_CONTEXT);
    });
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

describe("Tekton's config-defaults default-affinity-assistant-pod-template", () => {
  const tekton: TektonDefaultTemplate = {
    serviceAccountName: "tekton-sa",
    nodeSelector: { pool: "ci" },
    tolerations: [{ key: "tekton", operator: "Exists" }],
    priorityClassName: "tekton-priority",
    securityContext: { fsGroup: 3000, runAsUser: 3000 },
    imagePullSecrets: [{ name: "tekton-pull" }],
  };
  const bare: AffinityPolicySpec = { mode: "pipelineruns" };

  it("is the lowest layer: used where neither the policy nor the run says", () => {
    const t = effectivePlaceholderTemplate(bare, run(), tekton);
    expect(t.serviceAccountName).to.equal("tekton-sa");
    expect(t.nodeSelector).to.deep.equal({ pool: "ci" });
    expect(t.tolerations).to.deep.equal(tekton.tolerations);
    expect(t.priorityClassName).to.equal("tekton-priority");
    expect(t.imagePullSecrets).to.deep.equal([{ name: "tekton-pull" }]);
    // Merged over the restricted defaults, like the policy's.
    expect(t.securityContext).to.deep.equal({
      runAsNonRoot: true,
      runAsUser: 3000,
      fsGroup: 3000,
      seccompProfile: { type: "RuntimeDefault" },
    });
  });

  it("yields to the policy's settings", () => {
    const t = effectivePlaceholderTemplate(full, run(), tekton);
    expect(t.serviceAccountName).to.equal("policy-sa");
    expect(t.nodeSelector).to.deep.equal({ disk: "ssd" });
    expect(t.priorityClassName).to.equal("policy-priority");
    expect(t.imagePullSecrets).to.deep.equal([{ name: "policy-pull" }]);
    expect(t.securityContext.runAsUser).to.equal(1000);
    expect(t.securityContext.fsGroup, "fields the policy leaves out still come from Tekton's").to.equal(3000);
  });

  it("yields to the run's podTemplate", () => {
    const t = effectivePlaceholderTemplate(
      bare,
      run({}, { taskRunTemplate: { podTemplate: runPod } }),
      tekton,
    );
    expect(t.nodeSelector).to.deep.equal({ zone: "a" });
    expect(t.tolerations).to.deep.equal(runPod.tolerations);
    expect(t.priorityClassName).to.equal("run-priority");
    expect(t.imagePullSecrets).to.deep.equal([{ name: "run-pull" }]);
  });

  it("overrides the service account the run's pods use, as in Tekton", () => {
    const t = effectivePlaceholderTemplate(
      bare,
      run({}, { taskRunTemplate: { serviceAccountName: "run-sa" } }),
      tekton,
    );
    expect(t.serviceAccountName).to.equal("tekton-sa");
  });

  describe("parsing the key", () => {
    it("reads the fields a placeholder takes", () => {
      const state = parseDefaultPodTemplate(
        "serviceAccountName: affinity-assistant-sa\nnodeSelector:\n  disktype: ssd\nschedulerName: other\n",
      );
      expect(state).to.deep.equal({
        status: "loaded",
        template: { serviceAccountName: "affinity-assistant-sa", nodeSelector: { disktype: "ssd" } },
      });
    });

    it("is absent when the key is missing or empty", () => {
      expect(parseDefaultPodTemplate(undefined)).to.deep.equal({ status: "absent" });
      expect(parseDefaultPodTemplate("  \n")).to.deep.equal({ status: "absent" });
    });

    const invalid: [string, string, string][] = [
      ["YAML that does not parse", "nodeSelector: {disk: ssd", "not valid YAML"],
      ["a list instead of a mapping", "- nodeSelector", "must be a mapping"],
      ["a nodeSelector with a non-string value", "nodeSelector: {disk: 1}", "nodeSelector must be a map"],
      ["tolerations that are not a list", "tolerations: {key: a}", "tolerations must be a list"],
      [
        "an imagePullSecret without a name",
        "imagePullSecrets: [{secret: x}]",
        "imagePullSecrets must be a list",
      ],
      ["a numeric serviceAccountName", "serviceAccountName: 7", "serviceAccountName must be a string"],
    ];
    for (const [what, text, says] of invalid) {
      it(`says what is wrong with ${what}`, () => {
        const state = parseDefaultPodTemplate(text);
        expect(state.status).to.equal("invalid");
        expect(state.status === "invalid" && state.problem).to.contain(says);
      });
    }
  });
});
