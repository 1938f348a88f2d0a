import { createHash } from "node:crypto";
import type { V1Affinity, V1PodAffinityTerm } from "@kubernetes/client-node";
import { expect } from "chai";
import {
  COMPONENT_LABEL,
  MANAGED_LABEL,
  PLACEHOLDER_COMPONENT,
  PLACEHOLDER_LABEL,
  PLACEHOLDER_RUN_UID_LABEL,
  PLACEMENT_LABEL,
  RUN_LABEL,
  TEMPLATE_HASH_ANNOTATION,
} from "../../src/api/constants.js";
import { boundedSpec, DEFAULT_TENANCY_LIMITS } from "../../src/api/tenancy.js";
import type { AffinityPolicySpec, Mode, PipelineRun, WorkspaceBinding } from "../../src/api/types.js";
import { placeholderName, tektonClaimName } from "../../src/placement/names.js";
import {
  isOnePodClaim,
  isSingleNodeClaim,
  mountedClaims,
  type PlaceholderPlan,
  placeholderForPod,
  planPlaceholders,
  sharedClaims,
  volumeRequirements,
} from "../../src/placement/plan.js";
import { mergeAffinity } from "../../src/placement/pod-affinity.js";
import { placementTerm, workspaceTaskTerms } from "../../src/placement/run-placement.js";
import { claimsFromTemplates, placeholderStatefulSet } from "../../src/placement/statefulset.js";

const UID = "0b8f6c1e-2a3d-4f5e-9a7b-1c2d3e4f5a6b";

function pipelineRun(workspaces: WorkspaceBinding[] = [], uid = UID): PipelineRun {
  return {
    apiVersion: "tekton.dev/v1",
    kind: "PipelineRun",
    metadata: { name: "build-1", namespace: "team-a", uid, labels: { "tekton.dev/pipeline": "build" } },
    spec: { pipelineRef: { name: "build" }, workspaces },
  };
}

/** Tekton's volumeclaim naming, computed here without the code under test. */
function expectedTektonName(prefix: string, workspace: string, uid: string): string {
  const digest = createHash("sha256")
    .update(workspace + uid)
    .digest("hex");
  return `${prefix}-${digest.slice(0, 10)}`;
}

const template = (name?: string): Record<string, unknown> => ({
  ...(name ? { metadata: { name } } : {}),
  spec: { accessModes: ["ReadWriteOnce"], resources: { requests: { storage: "1Gi" } } },
});

describe("placement names", () => {
  describe("tektonClaimName", () => {
    it("uses the template name and the first 10 hex digits of sha256(workspace + run uid)", () => {
      const name = tektonClaimName("data", "source", UID);
      expect(name).to.equal(expectedTektonName("data", "source", UID));
      expect(name).to.match(/^data-[0-9a-f]{10}$/);
    });

    it("matches a pinned literal example", () => {
      expect(tektonClaimName("data", "source", UID)).to.equal("data-58f6f3d01e");
    });

    it('falls back to the "pvc" prefix for an absent or empty template name', () => {
      expect(tektonClaimName(undefined, "cache", UID)).to.equal(expectedTektonName("pvc", "cache", UID));
      expect(tektonClaimName("", "cache", UID)).to.equal(expectedTektonName("pvc", "cache", UID));
    });

    it("concatenates workspace and uid without a separator, as Tekton does", () => {
      // "ab" + "c" and "a" + "bc" hash the same input, so Tekton gives them the same suffix.
      expect(tektonClaimName("x", "ab", "c")).to.equal(tektonClaimName("x", "a", "bc"));
      expect(tektonClaimName("x", "ws", "uid-1")).to.not.equal(tektonClaimName("x", "ws", "uid-2"));
    });
  });

  describe("placeholderName", () => {
    it("is deterministic", () => {
      expect(placeholderName(UID, "pipelinerun")).to.equal(placeholderName(UID, "pipelinerun"));
    });

    it("differs per key and per run", () => {
      const names = new Set([
        placeholderName(UID, "pipelinerun"),
        placeholderName(UID, "claim:a"),
        placeholderName(UID, "claim:b"),
        placeholderName("another-uid", "pipelinerun"),
      ]);
      expect(names.size).to.equal(4);
    });

    it("leaves room for the StatefulSet pod suffix and is a valid DNS label", () => {
      const longKey = `claim:${"x".repeat(300)}`;
      for (const name of [placeholderName(UID, "pipelinerun"), placeholderName(UID.repeat(5), longKey)]) {
        expect(name.length).to.be.at.most(63 - "-0".length);
        expect(`${name}-0`).to.match(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/);
      }
    });
  });
});

describe("planPlaceholders", () => {
  const ws: WorkspaceBinding[] = [
    { name: "source", persistentVolumeClaim: { claimName: "shared" } },
    { name: "cache", persistentVolumeClaim: { claimName: "shared" } },
    { name: "results", volumeClaimTemplate: template("results") },
    { name: "scratch", emptyDir: {} },
    { name: "other", persistentVolumeClaim: { claimName: "other" } },
  ];

  it("plans nothing in disabled mode", () => {
    expect(planPlaceholders(pipelineRun(ws), "disabled")).to.deep.equal([]);
  });

  for (const mode of ["pipelineruns", "isolate-pipelinerun"] as Mode[]) {
    it(`plans one run-wide placeholder in ${mode} mode that mounts every claim, as Tekton's does`, () => {
      const plans = planPlaceholders(pipelineRun(ws), mode);
      expect(plans).to.have.length(1);
      expect(plans[0]!.name).to.equal(placeholderName(UID, "pipelinerun"));
      const templated = expectedTektonName("results", "results", UID);
      expect(plans[0]!.claims.map((c) => c.name)).to.deep.equal(["shared", templated, "other"]);
      expect(plans[0]!.claims[0]!.workspaces).to.deep.equal(["source", "cache"]);
      expect(planPlaceholders(pipelineRun(), mode)[0]!.claims).to.deep.equal([]);
    });
  }

  it("plans one placeholder per distinct claim in workspaces mode", () => {
    const plans = planPlaceholders(pipelineRun(ws), "workspaces");
    const templated = expectedTektonName("results", "results", UID);
    expect(plans.map((p) => p.claims.map((c) => c.name))).to.deep.equal([["shared"], [templated], ["other"]]);
    expect(new Set(plans.map((p) => p.name)).size).to.equal(3);

    const [shared, results, other] = plans.map((p) => ({ ...p.claims[0]!, name: p.name }));
    expect(shared!.workspaces).to.deep.equal(["source", "cache"]);
    expect(shared!.name).to.equal(placeholderName(UID, "claim:shared"));
    expect(shared!.template).to.equal(undefined);
    expect(other!.workspaces).to.deep.equal(["other"]);
    expect(other!.template).to.equal(undefined);

    expect(results!.workspaces).to.deep.equal(["results"]);
    expect(results!.name).to.equal(placeholderName(UID, `claim:${templated}`));
    expect(results!.template).to.deep.equal(template("results"));
  });

  it("names a template without metadata.name with Tekton's pvc- prefix", () => {
    const plans = planPlaceholders(
      pipelineRun([{ name: "w", volumeClaimTemplate: template() }]),
      "workspaces",
    );
    expect(plans).to.have.length(1);
    expect(plans[0]!.claims.map((c) => c.name)).to.deep.equal([expectedTektonName("pvc", "w", UID)]);
  });

  it("ignores runs whose workspaces are not PVC-backed", () => {
    const run = pipelineRun([
      { name: "scratch", emptyDir: {} },
      { name: "cfg", configMap: { name: "c" } },
    ]);
    expect(planPlaceholders(run, "workspaces")).to.deep.equal([]);
    expect(planPlaceholders(pipelineRun(), "workspaces")).to.deep.equal([]);
  });

  it("carries each claim's access modes: a template's from its spec, a user PVC's as read, else unknown", () => {
    const rwop = {
      name: "scratch",
      volumeClaimTemplate: { metadata: { name: "scratch" }, spec: { accessModes: ["ReadWriteOncePod"] } },
    };
    const run = pipelineRun([...ws, rwop]);
    const [shared, results, other, scratch] = planPlaceholders(run, "pipelineruns", {
      shared: ["ReadWriteMany"],
    })[0]!.claims;
    expect(shared!.accessModes).to.deep.equal(["ReadWriteMany"]);
    expect(results!.accessModes).to.deep.equal(["ReadWriteOnce"]);
    // Not read (e.g. not found): unknown, which counts as ReadWriteOnce.
    expect(other).to.not.have.property("accessModes");
    expect(scratch!.accessModes).to.deep.equal(["ReadWriteOncePod"]);
    expect([shared, results, other, scratch].map((c) => isSingleNodeClaim(c!))).to.deep.equal([
      false,
      true,
      true,
      true,
    ]);
    expect([shared, results, other, scratch].map((c) => isOnePodClaim(c!))).to.deep.equal([
      false,
      false,
      false,
      true,
    ]);
    // The same in workspaces mode, one claim per plan, with every claim co-scheduled (All, as Tekton).
    const plans = planPlaceholders(run, "workspaces", { shared: ["ReadWriteMany"] }, "All");
    expect(plans.map((p) => p.claims[0]!.accessModes)).to.deep.equal([
      ["ReadWriteMany"],
      ["ReadWriteOnce"],
      undefined,
      ["ReadWriteOncePod"],
    ]);
  });

  describe("coscheduledClaims, in workspaces mode", () => {
    const rwx: WorkspaceBinding = {
      name: "downloads",
      volumeClaimTemplate: {
        metadata: { name: "downloads" },
        spec: { accessModes: ["ReadOnlyMany", "ReadWriteMany"] },
      },
    };
    const downloads = expectedTektonName("downloads", "downloads", UID);
    const templated = expectedTektonName("results", "results", UID);

    it("SingleNode (the default): no placeholder for a claim usable from every node; it is shared", () => {
      const run = pipelineRun([...ws, rwx]);
      const plans = planPlaceholders(run, "workspaces", { shared: ["ReadWriteMany"] });
      // Unknown access modes (other: not read) count as single-node: planned, never shared.
      expect(plans.map((p) => p.claims[0]!.name)).to.deep.equal([templated, "other"]);
      expect(sharedClaims(run, plans, "workspaces")).to.deep.equal(["shared", downloads]);
    });

    it("All: every claim gets its placeholder, none is shared", () => {
      const run = pipelineRun([...ws, rwx]);
      const plans = planPlaceholders(run, "workspaces", { shared: ["ReadWriteMany"] }, "All");
      expect(plans.map((p) => p.claims[0]!.name)).to.deep.equal(["shared", templated, "other", downloads]);
      expect(sharedClaims(run, plans, "workspaces")).to.deep.equal([]);
    });

    it("the run-wide modes: one placeholder for every claim, none shared", () => {
      const run = pipelineRun([...ws, rwx]);
      const plans = planPlaceholders(run, "pipelineruns", { shared: ["ReadWriteMany"] });
      expect(plans[0]!.claims.map((c) => c.name)).to.deep.equal(["shared", templated, "other", downloads]);
      expect(sharedClaims(run, plans, "pipelineruns")).to.deep.equal([]);
    });
  });

  it("takes only ReadWriteMany and ReadOnlyMany claims (alone) as usable from two nodes at once", () => {
    const claim = (accessModes?: string[]) => ({
      name: "c",
      workspaces: ["w"],
      ...(accessModes ? { accessModes } : {}),
    });
    expect(isSingleNodeClaim(claim(["ReadWriteMany"]))).to.equal(false);
    expect(isSingleNodeClaim(claim(["ReadOnlyMany"]))).to.equal(false);
    expect(isSingleNodeClaim(claim(["ReadOnlyMany", "ReadWriteMany"]))).to.equal(false);
    expect(isSingleNodeClaim(claim(["ReadWriteOnce"]))).to.equal(true);
    expect(isSingleNodeClaim(claim(["ReadWriteOnce", "ReadOnlyMany"]))).to.equal(true);
    expect(isSingleNodeClaim(claim(["ReadWriteOncePod"]))).to.equal(true);
    expect(isSingleNodeClaim(claim([]))).to.equal(true);
    expect(isSingleNodeClaim(claim())).to.equal(true);
  });

  it("agrees with placeholderForPod on the placeholder of a claim", () => {
    const plans = planPlaceholders(pipelineRun(ws), "workspaces");
    for (const plan of plans) {
      expect(placeholderForPod(UID, "workspaces", [plan.claims[0]!.name])).to.deep.equal({ name: plan.name });
    }
  });
});

describe("placeholderForPod", () => {
  it("returns nothing in disabled mode", () => {
    expect(placeholderForPod(UID, "disabled", ["a"])).to.deep.equal({});
  });

  it("returns the run placeholder in pipelineruns and isolate modes, whatever the claims", () => {
    const name = placeholderName(UID, "pipelinerun");
    expect(placeholderForPod(UID, "pipelineruns", [])).to.deep.equal({ name });
    expect(placeholderForPod(UID, "isolate-pipelinerun", ["a", "b"])).to.deep.equal({ name });
  });

  it("returns nothing in workspaces mode for a pod without claims", () => {
    expect(placeholderForPod(UID, "workspaces", [])).to.deep.equal({});
  });

  it("returns the claim's placeholder in workspaces mode for one claim (mounted once or twice)", () => {
    const name = placeholderName(UID, "claim:data");
    expect(placeholderForPod(UID, "workspaces", ["data"])).to.deep.equal({ name });
    expect(placeholderForPod(UID, "workspaces", ["data", "data"])).to.deep.equal({ name });
  });

  it("reports a problem naming both claims for two claims in workspaces mode", () => {
    const result = placeholderForPod(UID, "workspaces", ["alpha", "beta"]);
    expect(result.name).to.equal(undefined);
    expect(result.problem).to.be.a("string");
    expect(result.problem).to.include("alpha").and.include("beta");
    expect(result.problem).to.include("2 PersistentVolumeClaim");
    expect(result.problem).to.include('mode "pipelineruns"');
  });
});

describe("mergeAffinity", () => {
  const target = { placeholder: "affinity-placeholder-abc", namespace: "team-a" };
  const ourTerm: V1PodAffinityTerm = {
    labelSelector: { matchLabels: { [PLACEHOLDER_LABEL]: "affinity-placeholder-abc" } },
    namespaces: ["team-a"],
    topologyKey: "kubernetes.io/hostname",
  };
  const hostname = (node: string) => ({ key: "kubernetes.io/hostname", operator: "In", values: [node] });

  const existing: V1Affinity = {
    nodeAffinity: {
      requiredDuringSchedulingIgnoredDuringExecution: {
        nodeSelectorTerms: [
          { matchExpressions: [{ key: "disk", operator: "In", values: ["ssd"] }] },
          { matchFields: [{ key: "metadata.name", operator: "NotIn", values: ["bad"] }] },
        ],
      },
      preferredDuringSchedulingIgnoredDuringExecution: [
        { weight: 5, preference: { matchExpressions: [{ key: "zone", operator: "In", values: ["a"] }] } },
      ],
    },
    podAffinity: {
      requiredDuringSchedulingIgnoredDuringExecution: [
        { labelSelector: { matchLabels: { app: "db" } }, topologyKey: "topology.kubernetes.io/zone" },
      ],
      preferredDuringSchedulingIgnoredDuringExecution: [
        { weight: 1, podAffinityTerm: { labelSelector: {}, topologyKey: "kubernetes.io/hostname" } },
      ],
    },
    podAntiAffinity: {
      requiredDuringSchedulingIgnoredDuringExecution: [
        { labelSelector: { matchLabels: { app: "web" } }, topologyKey: "kubernetes.io/hostname" },
      ],
    },
  };

  it("adds our required pod-affinity term to an absent affinity", () => {
    expect(mergeAffinity(undefined, target)).to.deep.equal({
      podAffinity: { requiredDuringSchedulingIgnoredDuringExecution: [ourTerm] },
    });
  });

  it("uses the given topology key", () => {
    const merged = mergeAffinity(undefined, { ...target, topologyKey: "topology.kubernetes.io/zone" });
    expect(merged.podAffinity?.requiredDuringSchedulingIgnoredDuringExecution?.[0]?.topologyKey).to.equal(
      "topology.kubernetes.io/zone",
    );
  });

  it("keeps existing pod-affinity terms, node affinity and anti-affinity", () => {
    const merged = mergeAffinity(existing, target);
    expect(merged.podAffinity?.requiredDuringSchedulingIgnoredDuringExecution).to.deep.equal([
      ...existing.podAffinity!.requiredDuringSchedulingIgnoredDuringExecution!,
      ourTerm,
    ]);
    expect(merged.podAffinity?.preferredDuringSchedulingIgnoredDuringExecution).to.deep.equal(
      existing.podAffinity!.preferredDuringSchedulingIgnoredDuringExecution,
    );
    expect(merged.nodeAffinity).to.deep.equal(existing.nodeAffinity);
    expect(merged.podAntiAffinity).to.deep.equal(existing.podAntiAffinity);
  });

  it("with a pinned node, ANDs the hostname requirement into every node selector term", () => {
    const merged = mergeAffinity(existing, {
      ...target,
      pinned: { key: "kubernetes.io/hostname", value: "node-2" },
    });
    expect(
      merged.nodeAffinity?.requiredDuringSchedulingIgnoredDuringExecution?.nodeSelectorTerms,
    ).to.deep.equal([
      {
        matchExpressions: [{ key: "disk", operator: "In", values: ["ssd"] }, hostname("node-2")],
      },
      {
        matchFields: [{ key: "metadata.name", operator: "NotIn", values: ["bad"] }],
        matchExpressions: [hostname("node-2")],
      },
    ]);
    expect(merged.nodeAffinity?.preferredDuringSchedulingIgnoredDuringExecution).to.deep.equal(
      existing.nodeAffinity!.preferredDuringSchedulingIgnoredDuringExecution,
    );
    // Pinning replaces the pod-affinity term: the user's pod affinity is kept as it was.
    expect(merged.podAffinity).to.deep.equal(existing.podAffinity);
    expect(merged.podAntiAffinity).to.deep.equal(existing.podAntiAffinity);
  });

  it("with a pinned node and no node affinity, creates the one node selector term", () => {
    const expected = { nodeSelectorTerms: [{ matchExpressions: [hostname("node-1")] }] };
    expect(
      mergeAffinity(undefined, { ...target, pinned: { key: "kubernetes.io/hostname", value: "node-1" } }),
    ).to.deep.equal({
      nodeAffinity: { requiredDuringSchedulingIgnoredDuringExecution: expected },
    });
    const emptyTerms: V1Affinity = {
      nodeAffinity: { requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: [] } },
    };
    expect(
      mergeAffinity(emptyTerms, { ...target, pinned: { key: "kubernetes.io/hostname", value: "node-1" } })
        .nodeAffinity?.requiredDuringSchedulingIgnoredDuringExecution,
    ).to.deep.equal(expected);
  });

  it("pins to a zone by the zone label's value, not the hostname", () => {
    const pinned = { key: "topology.kubernetes.io/zone", value: "zone-b" };
    const merged = mergeAffinity(undefined, { ...target, pinned });
    expect(merged.nodeAffinity?.requiredDuringSchedulingIgnoredDuringExecution).to.deep.equal({
      nodeSelectorTerms: [
        { matchExpressions: [{ key: "topology.kubernetes.io/zone", operator: "In", values: ["zone-b"] }] },
      ],
    });
    expect(merged.podAffinity).to.equal(undefined);
  });

  it("does not mutate its input", () => {
    const before = structuredClone(existing);
    mergeAffinity(existing, target);
    mergeAffinity(existing, { ...target, pinned: { key: "kubernetes.io/hostname", value: "node-3" } });
    expect(existing).to.deep.equal(before);
  });
});

describe("mergeAffinity with the run's own required pod affinity", () => {
  const cache: V1PodAffinityTerm = {
    labelSelector: { matchLabels: { app: "cache" } },
    topologyKey: "kubernetes.io/hostname",
  };
  const taskOnly: V1PodAffinityTerm = {
    labelSelector: { matchLabels: { app: "gpu-driver" } },
    topologyKey: "kubernetes.io/hostname",
  };
  const withTerms = (...terms: V1PodAffinityTerm[]): V1Affinity => ({
    podAffinity: { requiredDuringSchedulingIgnoredDuringExecution: terms },
  });
  const target = { placeholder: "affinity-placeholder-abc", namespace: "team-a", carried: [cache] };

  it("puts ours in place of the terms the placeholder satisfies for the pod on its node", () => {
    const merged = mergeAffinity(withTerms(cache, taskOnly), target);
    const required = merged.podAffinity?.requiredDuringSchedulingIgnoredDuringExecution ?? [];
    // The pod's own term stays (the placeholder does not carry it); the carried one is left to it.
    expect(required.map((t) => t.labelSelector?.matchLabels)).to.deep.equal([
      { app: "gpu-driver" },
      { [PLACEHOLDER_LABEL]: "affinity-placeholder-abc" },
    ]);
  });

  it("keeps a carried term whose domain the placeholder's does not lie within", () => {
    const zonal = { ...target, topologyKey: "topology.kubernetes.io/zone" };
    const byNode = mergeAffinity(withTerms(cache), zonal);
    expect(byNode.podAffinity?.requiredDuringSchedulingIgnoredDuringExecution).to.have.length(2);
    const sameZone = { ...cache, topologyKey: "topology.kubernetes.io/zone" };
    const byZone = mergeAffinity(withTerms(sameZone), { ...zonal, carried: [sameZone] });
    expect(byZone.podAffinity?.requiredDuringSchedulingIgnoredDuringExecution).to.have.length(1);
  });
});

describe("placeholderStatefulSet", () => {
  const run = pipelineRun([{ name: "source", persistentVolumeClaim: { claimName: "shared" } }]);

  function build(spec: AffinityPolicySpec, plan?: PlaceholderPlan) {
    const p = plan ?? planPlaceholders(run, spec.mode)[0]!;
    return { plan: p, sts: placeholderStatefulSet(run, spec, p) };
  }

  it("labels the placeholder's pod, not its selector, with the run's placement token, which its tasks select", () => {
    const placed = { ...run, metadata: { ...run.metadata, labels: { [PLACEMENT_LABEL]: "t0k3n" } } };
    const p = planPlaceholders(placed, "pipelineruns")[0]!;
    const sts = placeholderStatefulSet(placed, { mode: "pipelineruns" }, p);
    const podLabels = sts.spec!.template.metadata!.labels!;
    const term = placementTerm("t0k3n");
    for (const [key, value] of Object.entries(term.labelSelector!.matchLabels!))
      expect(podLabels[key]).to.equal(value);
    expect(sts.spec!.selector.matchLabels).to.not.have.property(PLACEMENT_LABEL);
    expect(build({ mode: "pipelineruns" }).sts.spec!.template.metadata!.labels).to.not.have.property(
      PLACEMENT_LABEL,
    );
  });

  it("in workspaces mode, labels each claim's placeholder with the value the gate's task terms select", () => {
    const template = { spec: { accessModes: ["ReadWriteOnce"], resources: {} } };
    const gated: PipelineRun = {
      metadata: { name: "r", namespace: "ns", labels: { [PLACEMENT_LABEL]: "t0k3n" } },
      spec: {
        workspaces: [
          { name: "a", volumeClaimTemplate: template },
          { name: "b", volumeClaimTemplate: template },
        ],
        pipelineSpec: {
          tasks: [
            { name: "one", taskRef: { name: "x" }, workspaces: [{ name: "w", workspace: "a" }] },
            { name: "two", taskRef: { name: "x" }, workspaces: [{ name: "b" }] },
          ],
        },
      },
    };
    // At admission the run has no uid; the reconciler names the claims by it.
    const terms = workspaceTaskTerms(gated, "SingleNode", "t0k3n")!;
    const placed = { ...gated, metadata: { ...gated.metadata, uid: "0a1b" } };
    const sets = planPlaceholders(placed, "workspaces").map((p) =>
      placeholderStatefulSet(placed, { mode: "workspaces" }, p),
    );
    const matches = (term: V1PodAffinityTerm) =>
      sets.filter((sts) => {
        const labels = sts.spec!.template.metadata!.labels!;
        return Object.entries(term.labelSelector!.matchLabels!).every(([k, v]) => labels[k] === v);
      });
    // Each task selects exactly its own claim's placeholder.
    expect(matches(terms.get("one")!).map((s) => s.metadata!.name)).to.deep.equal([
      placeholderName("0a1b", `claim:${tektonClaimName(undefined, "a", "0a1b")}`),
    ]);
    expect(matches(terms.get("two")!).map((s) => s.metadata!.name)).to.deep.equal([
      placeholderName("0a1b", `claim:${tektonClaimName(undefined, "b", "0a1b")}`),
    ]);
  });

  it("meets the restricted Pod Security Standard", () => {
    const { sts } = build({ mode: "pipelineruns" });
    const pod = sts.spec!.template.spec!;
    expect(pod.securityContext?.runAsNonRoot).to.equal(true);
    expect(pod.securityContext?.seccompProfile?.type).to.equal("RuntimeDefault");
    expect(pod.automountServiceAccountToken).to.equal(false);
    expect(pod.containers).to.have.length(1);
    for (const c of pod.containers) {
      expect(c.securityContext?.allowPrivilegeEscalation).to.equal(false);
      expect(c.securityContext?.capabilities?.drop).to.deep.equal(["ALL"]);
      expect(c.securityContext?.privileged ?? false).to.equal(false);
    }
    expect(pod.hostNetwork ?? false).to.equal(false);
    expect(pod.hostPID ?? false).to.equal(false);
  });

  it("is owned by the run, as its controller", () => {
    const { sts } = build({ mode: "pipelineruns" });
    expect(sts.metadata?.namespace).to.equal("team-a");
    expect(sts.metadata?.ownerReferences).to.deep.equal([
      {
        apiVersion: "tekton.dev/v1",
        kind: "PipelineRun",
        name: "build-1",
        uid: UID,
        controller: true,
        blockOwnerDeletion: true,
      },
    ]);
  });

  it("carries the run's labels and tekton.dev/pipelineRun, as Tekton's assistant does, but never our marks", () => {
    for (const mode of ["pipelineruns", "isolate-pipelinerun", "workspaces"] as Mode[]) {
      const { sts, plan } = build({ mode });
      const stsLabels = sts.metadata?.labels ?? {};
      const podLabels = sts.spec!.template.metadata?.labels ?? {};
      expect(stsLabels).to.deep.equal({
        "tekton.dev/pipeline": "build",
        "tekton.dev/pipelineRun": "build-1",
        [COMPONENT_LABEL]: PLACEHOLDER_COMPONENT,
        [PLACEHOLDER_LABEL]: plan.name,
        [RUN_LABEL]: "build-1",
        [PLACEHOLDER_RUN_UID_LABEL]: UID,
      });
      for (const labels of [stsLabels, podLabels]) {
        // The managed label would send the placeholder through the pods webhook.
        expect(labels).to.not.have.property(MANAGED_LABEL);
        expect(labels[COMPONENT_LABEL]).to.equal(PLACEHOLDER_COMPONENT);
      }
      // The selector picks the pod template's labels.
      expect(sts.spec!.selector.matchLabels).to.deep.equal({ [PLACEHOLDER_LABEL]: plan.name });
      expect(podLabels[PLACEHOLDER_LABEL]).to.equal(plan.name);
      expect(sts.metadata?.name).to.equal(plan.name);
      expect(sts.spec!.replicas).to.equal(1);
    }
  });

  it("drops the run's marks and component label from what it inherits; ours win", () => {
    const marked: PipelineRun = {
      ...run,
      metadata: {
        ...run.metadata,
        labels: {
          team: "payments",
          [MANAGED_LABEL]: "true",
          [PLACEMENT_LABEL]: "t0k3n",
          [COMPONENT_LABEL]: "build",
          "tekton.dev/pipelineRun": "spoofed",
        },
      },
    };
    const p = planPlaceholders(marked, "pipelineruns")[0]!;
    const sts = placeholderStatefulSet(marked, { mode: "pipelineruns" }, p);
    for (const labels of [sts.metadata!.labels!, sts.spec!.template.metadata!.labels!]) {
      expect(labels.team).to.equal("payments");
      expect(labels).to.not.have.property(MANAGED_LABEL);
      expect(labels[COMPONENT_LABEL]).to.equal(PLACEHOLDER_COMPONENT);
      expect(labels["tekton.dev/pipelineRun"]).to.equal("build-1");
    }
    // The placement token only on the pod (its tasks select it), never on the set.
    expect(sts.metadata!.labels).to.not.have.property(PLACEMENT_LABEL);
  });

  it("inherits the run's whole pod affinity, merged with its own, without the gate's placement term", () => {
    const userAffinity: V1PodAffinityTerm = {
      labelSelector: { matchLabels: { app: "cache" } },
      topologyKey: "kubernetes.io/hostname",
    };
    const userAnti: V1PodAffinityTerm = {
      labelSelector: { matchLabels: { app: "noisy" } },
      topologyKey: "kubernetes.io/hostname",
    };
    const affinity: V1Affinity = {
      podAffinity: { requiredDuringSchedulingIgnoredDuringExecution: [userAffinity, placementTerm("t0k3n")] },
      podAntiAffinity: {
        requiredDuringSchedulingIgnoredDuringExecution: [userAnti],
        preferredDuringSchedulingIgnoredDuringExecution: [{ weight: 5, podAffinityTerm: userAnti }],
      },
    };
    const withAffinity: PipelineRun = {
      ...run,
      spec: {
        ...run.spec,
        taskRunTemplate: { podTemplate: { affinity: affinity as Record<string, unknown> } },
      },
    };
    for (const mode of ["pipelineruns", "isolate-pipelinerun"] as Mode[]) {
      const p = planPlaceholders(withAffinity, mode)[0]!;
      const merged = placeholderStatefulSet(withAffinity, { mode }, p).spec!.template.spec!.affinity!;
      // The run's own term stays; the term that makes its tasks follow this placeholder does not.
      expect(merged.podAffinity?.requiredDuringSchedulingIgnoredDuringExecution).to.deep.equal([
        userAffinity,
      ]);
      const required = merged.podAntiAffinity?.requiredDuringSchedulingIgnoredDuringExecution ?? [];
      const preferred = merged.podAntiAffinity?.preferredDuringSchedulingIgnoredDuringExecution ?? [];
      expect(required[0]).to.deep.equal(userAnti);
      expect(preferred[0]).to.deep.equal({ weight: 5, podAffinityTerm: userAnti });
      // Ours are kept beside the run's: isolation's required term, or spreading's preference.
      if (mode === "isolate-pipelinerun") expect(required).to.have.length(2);
      else expect(preferred).to.have.length(2);
    }
  });

  it("spreads placeholders over nodes outside isolate mode, as Tekton spreads its assistants", () => {
    for (const mode of ["pipelineruns", "workspaces"] as const) {
      const affinity = build({ mode }).sts.spec!.template.spec!.affinity;
      expect(affinity?.podAntiAffinity?.requiredDuringSchedulingIgnoredDuringExecution).to.equal(undefined);
      const [preferred, ...more] =
        affinity?.podAntiAffinity?.preferredDuringSchedulingIgnoredDuringExecution ?? [];
      expect(more).to.deep.equal([]);
      expect(preferred?.weight).to.equal(100);
      expect(preferred?.podAffinityTerm.topologyKey).to.equal("kubernetes.io/hostname");
      // Its own namespace's placeholders only: no namespaces, no namespaceSelector.
      expect(preferred?.podAffinityTerm.namespaces).to.equal(undefined);
      expect(preferred?.podAffinityTerm.namespaceSelector).to.equal(undefined);
      expect(preferred?.podAffinityTerm.labelSelector?.matchLabels).to.deep.equal({
        [COMPONENT_LABEL]: PLACEHOLDER_COMPONENT,
      });
    }
  });

  it("has no affinity outside isolate mode when spreading is off", () => {
    for (const mode of ["pipelineruns", "workspaces"] as const) {
      const affinity = build({ mode, placeholder: { spread: false } }).sts.spec!.template.spec!.affinity;
      expect(affinity).to.equal(undefined);
    }
  });

  it("in isolate mode with cluster scope, repels placeholders of the namespace's isolation group only", () => {
    for (const spec of [
      { mode: "isolate-pipelinerun" },
      { mode: "isolate-pipelinerun", isolation: { scope: "cluster" } },
    ] as AffinityPolicySpec[]) {
      const p = planPlaceholders(run, spec.mode)[0]!;
      const sts = placeholderStatefulSet(run, spec, p, {
        limits: DEFAULT_TENANCY_LIMITS,
        isolationGroup: "builders",
      });
      const pod = sts.spec!.template;
      const terms = pod.spec!.affinity?.podAntiAffinity?.requiredDuringSchedulingIgnoredDuringExecution;
      expect(terms).to.have.length(1);
      expect(terms![0]!.namespaceSelector).to.deep.equal({
        matchLabels: { [DEFAULT_TENANCY_LIMITS.isolationGroupLabel]: "builders" },
      });
      expect(terms![0]!.topologyKey).to.equal("kubernetes.io/hostname");
      // The term selects a placeholder pod like this one, and only pods carrying our run-uid label.
      const selector = terms![0]!.labelSelector!;
      expect(selector.matchExpressions).to.deep.equal([
        { key: PLACEHOLDER_RUN_UID_LABEL, operator: "Exists" },
      ]);
      for (const [k, v] of Object.entries(selector.matchLabels ?? {}))
        expect(pod.metadata?.labels?.[k]).to.equal(v);
      expect(pod.metadata?.labels).to.have.property(PLACEHOLDER_RUN_UID_LABEL);
    }
  });

  it("in isolate mode with cluster scope but no isolation group, stays within the namespace", () => {
    const { sts } = build({ mode: "isolate-pipelinerun" });
    const term =
      sts.spec!.template.spec!.affinity?.podAntiAffinity?.requiredDuringSchedulingIgnoredDuringExecution?.[0];
    expect(term).to.not.have.property("namespaceSelector");
    expect(term!.namespaces).to.equal(undefined);
  });

  it("never uses a topologyKey, priority class, image or size beyond the operator's bounds", () => {
    const limits = { ...DEFAULT_TENANCY_LIMITS, allowedImageRegistries: ["registry.k8s.io"] };
    const p = planPlaceholders(run, "isolate-pipelinerun")[0]!;
    const spec = boundedSpec(
      {
        mode: "isolate-pipelinerun",
        topologyKey: "kubernetes.io/os",
        placeholder: {
          priorityClassName: "system-cluster-critical",
          image: "evil.example/miner:1",
          resources: { requests: { cpu: "64", memory: "100Mi" }, limits: { memory: "512Gi" } },
        },
      },
      limits,
    );
    const pod = placeholderStatefulSet(run, spec, p, { limits }).spec!.template.spec!;
    const term = pod.affinity?.podAntiAffinity?.requiredDuringSchedulingIgnoredDuringExecution?.[0];
    expect(term!.topologyKey).to.equal("kubernetes.io/hostname");
    expect(pod.priorityClassName).to.equal(undefined);
    expect(pod.containers[0]!.image).to.equal("registry.k8s.io/pause:3.10");
    expect(pod.containers[0]!.resources).to.deep.equal({
      requests: { cpu: "1", memory: "100Mi" },
      limits: { memory: "1Gi" },
    });

    it("uses the operator's default placeholder image when the policy names none, or one out of bounds", () => {
      const limits = {
        ...DEFAULT_TENANCY_LIMITS,
        allowedImageRegistries: ["mirror.corp"],
        defaultPlaceholderImage: "mirror.corp/pause:3.10",
      };
      const p = planPlaceholders(run, "pipelineruns")[0]!;
      const image = (spec: AffinityPolicySpec) =>
        placeholderStatefulSet(run, spec, p, { limits }).spec!.template.spec!.containers[0]!.image;
      expect(image({ mode: "pipelineruns" })).to.equal("mirror.corp/pause:3.10");
      expect(image({ mode: "pipelineruns", placeholder: { image: "docker.io/evil:1" } })).to.equal(
        "mirror.corp/pause:3.10",
      );
      expect(image({ mode: "pipelineruns", placeholder: { image: "mirror.corp/hold:2" } })).to.equal(
        "mirror.corp/hold:2",
      );
    });
  });

  it("records a template hash that changes with the policy's placeholder settings", () => {
    const a = build({ mode: "pipelineruns" }).sts.metadata?.annotations?.[TEMPLATE_HASH_ANNOTATION];
    const same = build({ mode: "pipelineruns" }).sts.metadata?.annotations?.[TEMPLATE_HASH_ANNOTATION];
    const b = build({ mode: "pipelineruns", placeholder: { nodeSelector: { disk: "ssd" } } }).sts.metadata
      ?.annotations?.[TEMPLATE_HASH_ANNOTATION];
    expect(a).to.match(/^[0-9a-f]{16}$/);
    expect(same).to.equal(a);
    expect(b).to.not.equal(a);
  });

  it("repels only same-namespace placeholders with namespace scope, on the policy's topology key", () => {
    const { sts } = build({
      mode: "isolate-pipelinerun",
      isolation: { scope: "namespace" },
      topologyKey: "topology.kubernetes.io/zone",
    });
    const term =
      sts.spec!.template.spec!.affinity?.podAntiAffinity?.requiredDuringSchedulingIgnoredDuringExecution?.[0];
    expect(term).to.not.equal(undefined);
    expect(term).to.not.have.property("namespaceSelector");
    expect(term!.namespaces).to.equal(undefined);
    expect(term!.topologyKey).to.equal("topology.kubernetes.io/zone");
  });

  it("mounts its claims in every mode: one per placeholder in workspaces mode, all of the run's otherwise", () => {
    const ws = build({ mode: "workspaces" });
    const pod = ws.sts.spec!.template.spec!;
    expect(pod.volumes).to.deep.equal([{ name: "claim-0", persistentVolumeClaim: { claimName: "shared" } }]);
    expect(pod.containers[0]!.volumeMounts).to.deep.equal([{ name: "claim-0", mountPath: "/claims/0" }]);
    expect(ws.sts.metadata?.annotations?.["affinity.tekton.dev/workspaces"]).to.equal("source");

    for (const mode of ["pipelineruns", "isolate-pipelinerun"] as Mode[]) {
      const other = build({ mode }).sts.spec!.template.spec!;
      expect(other.volumes).to.deep.equal([
        { name: "claim-0", persistentVolumeClaim: { claimName: "shared" } },
      ]);
      expect(other.containers[0]!.volumeMounts).to.deep.equal([{ name: "claim-0", mountPath: "/claims/0" }]);
    }
    const noClaims = placeholderStatefulSet(
      pipelineRun(),
      { mode: "pipelineruns" },
      planPlaceholders(pipelineRun(), "pipelineruns")[0]!,
    );
    expect(noClaims.spec!.template.spec!.volumes).to.equal(undefined);
  });

  it("does not mount a ReadWriteOncePod claim in any mode: only one pod may use it, the task's", () => {
    const rwopRun = pipelineRun([
      { name: "source", persistentVolumeClaim: { claimName: "shared" } },
      { name: "exclusive", persistentVolumeClaim: { claimName: "solo" } },
      { name: "cache", persistentVolumeClaim: { claimName: "cache" } },
    ]);
    const modes = { solo: ["ReadWriteOncePod"], cache: ["ReadWriteMany"] };
    for (const mode of ["pipelineruns", "isolate-pipelinerun"] as Mode[]) {
      const plan = planPlaceholders(rwopRun, mode, modes)[0]!;
      expect(mountedClaims(plan).map((c) => c.name)).to.deep.equal(["shared", "cache"]);
      const pod = placeholderStatefulSet(rwopRun, { mode }, plan).spec!.template.spec!;
      expect(pod.volumes).to.deep.equal([
        { name: "claim-0", persistentVolumeClaim: { claimName: "shared" } },
        { name: "claim-1", persistentVolumeClaim: { claimName: "cache" } },
      ]);
      expect(pod.containers[0]!.volumeMounts).to.deep.equal([
        { name: "claim-0", mountPath: "/claims/0" },
        { name: "claim-1", mountPath: "/claims/1" },
      ]);
    }
    // workspaces mode: the claim's own placeholder still exists (the tasks follow it), mounting nothing.
    const solo = planPlaceholders(rwopRun, "workspaces", modes)[1]!;
    expect(solo.claims.map((c) => c.name)).to.deep.equal(["solo"]);
    const sts = placeholderStatefulSet(rwopRun, { mode: "workspaces" }, solo);
    expect(sts.spec!.template.spec!.volumes).to.equal(undefined);
    expect(sts.spec!.template.spec!.containers[0]!.volumeMounts).to.equal(undefined);
    // The same claim of unknown access modes is mounted (the safe side for ReadWriteOnce).
    const unknown = planPlaceholders(rwopRun, "workspaces")[1]!;
    expect(
      placeholderStatefulSet(rwopRun, { mode: "workspaces" }, unknown).spec!.template.spec!.volumes,
    ).to.deep.equal([{ name: "claim-0", persistentVolumeClaim: { claimName: "solo" } }]);
  });

  it("sharing a zone, mounts no single-node claim and follows the bound volumes' node affinity", () => {
    const run = pipelineRun([
      { name: "source", persistentVolumeClaim: { claimName: "shared" } },
      { name: "cache", persistentVolumeClaim: { claimName: "cache" } },
    ]);
    const zone = "topology.kubernetes.io/zone";
    const plan = planPlaceholders(run, "pipelineruns", {
      shared: ["ReadWriteOnce"],
      cache: ["ReadWriteMany"],
    })[0]!;
    // Sharing a node: both mounted, as before.
    expect(mountedClaims(plan).map((c) => c.name)).to.deep.equal(["shared", "cache"]);
    // Sharing a zone: a mounted ReadWriteOnce volume would stay on the placeholder's node all run long.
    expect(mountedClaims(plan, false).map((c) => c.name)).to.deep.equal(["cache"]);
    plan.volumeAffinity = [{ key: zone, operator: "In", values: ["zone-b"] }];
    const spec: AffinityPolicySpec = { mode: "pipelineruns", topologyKey: zone };
    // The run's own node affinity (the placeholder must land where its tasks may).
    run.spec.taskRunTemplate = {
      podTemplate: {
        affinity: {
          nodeAffinity: {
            requiredDuringSchedulingIgnoredDuringExecution: {
              nodeSelectorTerms: [
                { matchExpressions: [{ key: "disk", operator: "In", values: ["ssd"] }] },
                { matchExpressions: [{ key: "disk", operator: "In", values: ["nvme"] }] },
              ],
            },
          },
        },
      },
    } as PipelineRun["spec"]["taskRunTemplate"];
    const pod = placeholderStatefulSet(run, spec, plan).spec!.template.spec!;
    expect(pod.volumes).to.deep.equal([{ name: "claim-0", persistentVolumeClaim: { claimName: "cache" } }]);
    // Each alternative term also asks for the volume's zone.
    expect(
      pod.affinity?.nodeAffinity?.requiredDuringSchedulingIgnoredDuringExecution?.nodeSelectorTerms,
    ).to.deep.equal([
      {
        matchExpressions: [
          { key: "disk", operator: "In", values: ["ssd"] },
          { key: zone, operator: "In", values: ["zone-b"] },
        ],
      },
      {
        matchExpressions: [
          { key: "disk", operator: "In", values: ["nvme"] },
          { key: zone, operator: "In", values: ["zone-b"] },
        ],
      },
    ]);
  });

  it("reads a volume's node requirements only from a single required term", () => {
    const term = (value: string) => ({
      matchExpressions: [{ key: "topology.kubernetes.io/zone", operator: "In", values: [value] }],
    });
    expect(
      volumeRequirements({ spec: { nodeAffinity: { required: { nodeSelectorTerms: [term("a")] } } } }),
    ).to.deep.equal([{ key: "topology.kubernetes.io/zone", operator: "In", values: ["a"] }]);
    expect(
      volumeRequirements({
        spec: { nodeAffinity: { required: { nodeSelectorTerms: [term("a"), term("b")] } } },
      }),
    ).to.deep.equal([]);
    expect(volumeRequirements({ spec: {} })).to.deep.equal([]);
  });

  it("still has the claim of a ReadWriteOncePod volumeClaimTemplate created, only not mounted", () => {
    const tmpl = { metadata: { name: "solo" }, spec: { accessModes: ["ReadWriteOncePod"] } };
    const rwopRun = pipelineRun([{ name: "exclusive", volumeClaimTemplate: tmpl }]);
    const plan = planPlaceholders(rwopRun, "pipelineruns")[0]!;
    expect(claimsFromTemplates(rwopRun, plan).map((c) => c.metadata?.name)).to.deep.equal([
      expectedTektonName("solo", "exclusive", UID),
    ]);
    expect(
      placeholderStatefulSet(rwopRun, { mode: "pipelineruns" }, plan).spec!.template.spec!.volumes,
    ).to.equal(undefined);
  });
});

describe("claimsFromTemplates", () => {
  const tmpl = {
    metadata: { name: "results", labels: { team: "a" } },
    spec: { accessModes: ["ReadWriteOnce"], resources: { requests: { storage: "1Gi" } } },
  };
  const run = pipelineRun([{ name: "results", volumeClaimTemplate: tmpl }]);

  it("builds the claim Tekton would create, under Tekton's name, owned by the run", () => {
    const plan = planPlaceholders(run, "workspaces")[0]!;
    const claims = claimsFromTemplates(run, plan);
    expect(claims).to.have.length(1);
    expect(claims[0]).to.deep.equal({
      apiVersion: "v1",
      kind: "PersistentVolumeClaim",
      metadata: {
        name: expectedTektonName("results", "results", UID),
        labels: { team: "a" },
        namespace: "team-a",
        ownerReferences: [
          {
            apiVersion: "tekton.dev/v1",
            kind: "PipelineRun",
            name: "build-1",
            uid: UID,
            controller: true,
            blockOwnerDeletion: true,
          },
        ],
      },
      spec: tmpl.spec,
    });
  });

  it("does not share structure with the plan's template", () => {
    const plan = planPlaceholders(run, "workspaces")[0]!;
    const [claim] = claimsFromTemplates(run, plan);
    claim!.spec!.accessModes!.push("ReadOnlyMany");
    expect(tmpl.spec.accessModes).to.deep.equal(["ReadWriteOnce"]);
  });

  it("returns none for a plan without a template", () => {
    const pvcRun = pipelineRun([{ name: "src", persistentVolumeClaim: { claimName: "shared" } }]);
    expect(claimsFromTemplates(pvcRun, planPlaceholders(pvcRun, "workspaces")[0]!)).to.deep.equal([]);
    expect(claimsFromTemplates(pvcRun, planPlaceholders(pvcRun, "pipelineruns")[0]!)).to.deep.equal([]);
  });

  it("builds every template claim of the run-wide placeholder in pipelineruns mode", () => {
    const two = pipelineRun([
      { name: "results", volumeClaimTemplate: tmpl },
      { name: "src", persistentVolumeClaim: { claimName: "shared" } },
      { name: "cache", volumeClaimTemplate: tmpl },
    ]);
    const names = claimsFromTemplates(two, planPlaceholders(two, "pipelineruns")[0]!).map(
      (c) => c.metadata?.name,
    );
    expect(names).to.deep.equal([
      expectedTektonName("results", "results", UID),
      expectedTektonName("results", "cache", UID),
    ]);
  });
});
