// The affinity a task pod gets, merged into whatever affinity the pod already has. Tekton's assistant
// overwrote the pod's affinity; we add our term and keep the user's, except the required pod affinity
// terms the placeholder already satisfies for the pod: the scheduler needs one pod to match every
// required pod affinity term, and no pod is both the user's target and our placeholder.

import { isDeepStrictEqual } from "node:util";
import type { V1Affinity, V1NodeSelectorRequirement, V1PodAffinityTerm } from "@kubernetes/client-node";
import { DEFAULT_TOPOLOGY_KEY, PLACEHOLDER_LABEL } from "../api/constants.js";

export interface AffinityTarget {
  placeholder: string;
  namespace: string;
  topologyKey?: string;
  /** nodePinning: the placeholder's topology domain, as the node label (topologyKey) and its value on
   * the placeholder's node, when known. Without it we fall back to pod affinity. */
  pinned?: { key: string; value: string };
  /** Required pod affinity terms the placeholder carries (it inherits the run-wide pod template's): a
   * pod in the placeholder's domain satisfies them through it when that domain lies within the term's
   * (our topologyKey is the node, or the term's own key), and then carries our term in their place. */
  carried?: V1PodAffinityTerm[];
}

/** Whether being in the placeholder's `topologyKey` domain puts a pod in the same `term` domain as the
 * placeholder: always on one node; on a wider domain, only for the same key. */
export function satisfiedThroughPlaceholder(term: V1PodAffinityTerm, topologyKey: string): boolean {
  return topologyKey === DEFAULT_TOPOLOGY_KEY || term.topologyKey === topologyKey;
}

export function mergeAffinity(existing: V1Affinity | undefined, target: AffinityTarget): V1Affinity {
  const affinity: V1Affinity = structuredClone(existing ?? {});
  if (target.pinned) {
    const requirement: V1NodeSelectorRequirement = {
      key: target.pinned.key,
      operator: "In",
      values: [target.pinned.value],
    };
    affinity.nodeAffinity ??= {};
    const nodeAffinity = affinity.nodeAffinity;
    nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution ??= { nodeSelectorTerms: [] };
    const required = nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution;
    // Node selector terms are ORed: our requirement must hold in every one of them (AND).
    if (required.nodeSelectorTerms.length === 0)
      required.nodeSelectorTerms.push({ matchExpressions: [requirement] });
    else
      for (const term of required.nodeSelectorTerms)
        term.matchExpressions = [...(term.matchExpressions ?? []), requirement];
    return affinity;
  }
  const topologyKey = target.topologyKey ?? DEFAULT_TOPOLOGY_KEY;
  const term: V1PodAffinityTerm = {
    labelSelector: { matchLabels: { [PLACEHOLDER_LABEL]: target.placeholder } },
    namespaces: [target.namespace],
    topologyKey,
  };
  const followed = (target.carried ?? []).filter((t) => satisfiedThroughPlaceholder(t, topologyKey));
  affinity.podAffinity ??= {};
  const podAffinity = affinity.podAffinity;
  podAffinity.requiredDuringSchedulingIgnoredDuringExecution = [
    ...(podAffinity.requiredDuringSchedulingIgnoredDuringExecution ?? []).filter(
      (t) => !followed.some((f) => isDeepStrictEqual(f, t)),
    ),
    term,
  ];
  return affinity;
}
