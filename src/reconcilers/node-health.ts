// Whether a node can keep a placeholder: pure, so the rule is testable without a cluster.

import type { V1Node, V1Taint, V1Toleration } from "@kubernetes/client-node";

export interface NodeProblem {
  reason: "Cordoned" | "Tainted" | "NotReady" | "Gone";
  message: string;
  /** For NotReady: how much longer until the grace period is over (0 = act now). */
  waitMs: number;
}

function tolerates(tolerations: V1Toleration[], taint: V1Taint): boolean {
  return tolerations.some((t) => {
    if (t.effect && t.effect !== taint.effect) return false;
    if (!t.key) return t.operator === "Exists";
    if (t.key !== taint.key) return false;
    return t.operator === "Exists" || (t.value ?? "") === (taint.value ?? "");
  });
}

export function nodeProblem(
  node: V1Node | undefined,
  tolerations: V1Toleration[],
  now: number,
  notReadyGraceMs: number,
): NodeProblem | undefined {
  if (!node) return { reason: "Gone", message: "the node no longer exists", waitMs: 0 };
  const name = node.metadata?.name;
  if (node.spec?.unschedulable) return { reason: "Cordoned", message: `node ${name} is cordoned`, waitMs: 0 };
  const taint = (node.spec?.taints ?? []).find(
    (t) =>
      (t.effect === "NoSchedule" || t.effect === "NoExecute") &&
      // The unschedulable taint mirrors the cordon; the not-ready ones mirror the condition below.
      t.key !== "node.kubernetes.io/unschedulable" &&
      !t.key.startsWith("node.kubernetes.io/not-ready") &&
      !t.key.startsWith("node.kubernetes.io/unreachable") &&
      !tolerates(tolerations, t),
  );
  if (taint) {
    return {
      reason: "Tainted",
      message: `node ${name} has taint ${taint.key}${taint.value ? `=${taint.value}` : ""}:${taint.effect} that the placeholder does not tolerate`,
      waitMs: 0,
    };
  }
  const ready = node.status?.conditions?.find((c) => c.type === "Ready");
  if (ready && ready.status !== "True") {
    const since = ready.lastTransitionTime ? new Date(ready.lastTransitionTime).getTime() : now;
    return {
      reason: "NotReady",
      message: `node ${name} has been NotReady since ${new Date(since).toISOString()}`,
      waitMs: Math.max(0, since + notReadyGraceMs - now),
    };
  }
  return undefined;
}
