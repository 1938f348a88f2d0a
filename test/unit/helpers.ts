import type { AffinityPolicy, AffinityPolicySpec, PipelineRun } from "../../src/api/types.js";

export function policy(
  name: string,
  spec: Partial<AffinityPolicySpec> = {},
  meta: Partial<AffinityPolicy["metadata"]> = {},
): AffinityPolicy {
  return {
    apiVersion: "affinity.tekton.dev/v1alpha1",
    kind: "AffinityPolicy",
    metadata: { name, namespace: "team-a", creationTimestamp: "2024-01-01T00:00:00Z", ...meta },
    spec: { mode: "workspaces", ...spec },
  };
}

export function run(labels: Record<string, string> = {}, spec: PipelineRun["spec"] = {}): PipelineRun {
  return { metadata: { name: "build-1", namespace: "team-a", labels }, spec };
}
