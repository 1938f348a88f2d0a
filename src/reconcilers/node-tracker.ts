// When each node started to look unusable (cordoned, tainted, NotReady), as this replica observed it.
// Node objects do not record when a cordon or a custom taint happened, and the settle period needs that.
// Every replica watches every node, so each keeps its own copy; it is a rebuildable cache, not state:
// a replica that starts late just waits at most one extra settle period.

import type { V1Node } from "@kubernetes/client-node";

function troubleSignature(node: V1Node): string {
  const taints = (node.spec?.taints ?? [])
    .filter((t) => t.effect === "NoSchedule" || t.effect === "NoExecute")
    .map((t) => `${t.key}:${t.effect}`)
    .sort();
  const ready = node.status?.conditions?.find((c) => c.type === "Ready")?.status ?? "True";
  if (!node.spec?.unschedulable && taints.length === 0 && ready === "True") return "";
  return JSON.stringify([node.spec?.unschedulable ?? false, taints, ready]);
}

export class NodeTracker {
  private readonly since = new Map<string, { signature: string; at: number }>();

  observe(node: V1Node, now = Date.now()): void {
    const name = node.metadata?.name;
    if (!name) return;
    const signature = troubleSignature(node);
    if (!signature) {
      this.since.delete(name);
      return;
    }
    // Keep the first time it went bad while it stays bad in any way.
    if (!this.since.has(name)) this.since.set(name, { signature, at: now });
  }

  forget(name: string): void {
    this.since.delete(name);
  }

  /** When the node started to look unusable; `now` if we have not seen it happen. */
  troubleSince(name: string, now = Date.now()): number {
    return this.since.get(name)?.at ?? now;
  }
}
