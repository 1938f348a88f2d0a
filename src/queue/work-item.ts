// What goes into Redis: only a pointer to cluster state ("reconcile run ns/name"), never the state
// itself, so a flushed or replaced Redis loses nothing that the cluster cannot tell us again.

export type WorkKind = "run" | "node" | "policy";

export interface WorkItem {
  kind: WorkKind;
  /** Empty for cluster-scoped objects (nodes). */
  namespace: string;
  name: string;
}

const KINDS: readonly WorkKind[] = ["run", "node", "policy"];

/** One key per object: the BullMQ deduplication id, so work for one object is never run twice at once. */
export function workKey(item: WorkItem): string {
  return `${item.kind}:${item.namespace}/${item.name}`;
}

/** Validates a payload read back from Redis; anything else is a malformed job. */
export function parseWorkItem(data: unknown): WorkItem | undefined {
  if (!data || typeof data !== "object") return undefined;
  const { kind, namespace, name } = data as Record<string, unknown>;
  if (!KINDS.includes(kind as WorkKind)) return undefined;
  if (typeof namespace !== "string" || typeof name !== "string" || name === "") return undefined;
  return { kind: kind as WorkKind, namespace, name };
}
