// The affinity a task pod gets, merged into whatever affinity the pod already has. Tekton's assistant
// overwrote the pod's affinity; we add our term and keep the user's.

import type { V1Affinity, V1NodeSelectorRequirement, V1PodAffinityTerm } from "@kubernetes/client-node";
import { DEFAULT_TOPOLOGY_KEY, PLACEHOLDER_LABEL } from "../api/constants.js";

export interface AffinityTarget {
  placeholder: string;
  namespace: string;
  topologyKey?: string;
  /** nodePinning: the placeholder's topology domain, as the node label (topologyKey) and its value on
   * the placeholder's node, when known. Without it we fall back to pod affinity. */
  pinned?: { key: string; value: string };
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
  const term: V1PodAffinityTerm = {
    labelSelector: { matchLabels: { [PLACEHOLDER_LABEL]: target.placeholder } },
    namespaces: [target.namespace],
    topologyKey: target.topologyKey ?? DEFAULT_TOPOLOGY_KEY,
  };
  affinity.podAffinity ??= {};
  const podAffinity = affinity.podAffinity;
  podAffinity.requiredDuringSchedulingIgnoredDuringExecution = [
    ...(podAffinity.requiredDuringSchedulingIgnoredDuringExecution ?? []),
    term,
  ];
  return affinity;
}
