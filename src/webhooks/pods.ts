// The pod webhook: a managed run's TaskRun pod gets affinity to its placeholder. Only pods carrying our
// managed label reach it (objectSelector), and it answers from the informer caches alone.

import type { V1Pod } from "@kubernetes/client-node";
import {
  DEFAULT_TOPOLOGY_KEY,
  MODE_ANNOTATION,
  PLACEHOLDER_LABEL,
  SHARED_CLAIMS_ANNOTATION,
} from "../api/constants.js";
import type { AffinityPolicySpec, Mode, PipelineRun } from "../api/types.js";
import { placeholderForPod, runClaims } from "../placement/plan.js";
import { mergeAffinity } from "../placement/pod-affinity.js";
import { ownRequiredPodAffinity } from "../placement/run-placement.js";
import type { AdmissionDecision } from "./admission.js";

export interface PodContext {
  /** The pod's PipelineRun, from the cache. */
  run: PipelineRun | undefined;
  /** The run's effective policy spec (mode as recorded at gate time). */
  spec: AffinityPolicySpec | undefined;
  /** Node of a scheduled placeholder pod, by placeholder name (for nodePinning). */
  placeholderNode: (namespace: string, placeholder: string) => string | undefined;
  /** A node's labels, from the cache (for nodePinning to a topology domain). */
  nodeLabels?: (node: string) => Record<string, string> | undefined;
}

/**
 * nodePinning's target: the topologyKey label's value on the placeholder's node (its hostname, or its
 * zone with topologyKey topology.kubernetes.io/zone). The hostname label usually equals the node's
 * name, and the name stands in for it while the node is not in the cache. Any other key needs the
 * label: without it the pod falls back to pod affinity, which the scheduler resolves itself.
 */
export function pinnedDomain(
  topologyKey: string,
  node: string | undefined,
  labels: Record<string, string> | undefined,
): { key: string; value: string } | undefined {
  if (!node) return undefined;
  const value = labels?.[topologyKey] ?? (topologyKey === DEFAULT_TOPOLOGY_KEY ? node : undefined);
  return value ? { key: topologyKey, value } : undefined;
}

export function mutateTaskPod(pod: V1Pod, ctx: PodContext): AdmissionDecision {
  // Placeholders are ours and never carry the managed label; this is a second line of defence.
  if (pod.metadata?.labels?.[PLACEHOLDER_LABEL]) return { allowed: true };
  const { run, spec } = ctx;
  if (!run?.metadata.uid || !spec) {
    return {
      allowed: true,
      warnings: [
        "tekton-affinity: this pod's PipelineRun is not in the controller's cache yet; no affinity added",
      ],
    };
  }
  const mode = (run.metadata.annotations?.[MODE_ANNOTATION] as Mode | undefined) ?? spec.mode;
  // Only claims the run binds through workspaces have a placeholder; a PVC a Task or pod template adds
  // as a plain volume is none of ours, nor one the release recorded as shared (usable from every node).
  const shared = new Set((run.metadata.annotations?.[SHARED_CLAIMS_ANNOTATION] ?? "").split(","));
  const workspaceClaims = new Set(
    runClaims(run)
      .map((c) => c.name)
      .filter((name) => !shared.has(name)),
  );
  const claims = (pod.spec?.volumes ?? []).flatMap((v) =>
    v.persistentVolumeClaim && workspaceClaims.has(v.persistentVolumeClaim.claimName)
      ? [v.persistentVolumeClaim.claimName]
      : [],
  );
  const target = placeholderForPod(run.metadata.uid, mode, claims);
  if (target.problem) return { allowed: false, message: `tekton-affinity: ${target.problem}` };
  if (!target.name) return { allowed: true };

  const namespace = run.metadata.namespace;
  const topologyKey = spec.topologyKey ?? DEFAULT_TOPOLOGY_KEY;
  const node = spec.strategy === "nodePinning" ? ctx.placeholderNode(namespace, target.name) : undefined;
  const pinned = pinnedDomain(topologyKey, node, node ? ctx.nodeLabels?.(node) : undefined);
  const affinity = mergeAffinity(pod.spec?.affinity, {
    placeholder: target.name,
    namespace,
    topologyKey,
    ...(pinned ? { pinned } : {}),
    carried: ownRequiredPodAffinity(run, false),
  });
  return {
    allowed: true,
    patch: [{ op: pod.spec?.affinity ? "replace" : "add", path: "/spec/affinity", value: affinity }],
  };
}
