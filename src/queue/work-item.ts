// What goes into Redis: only a pointer to cluster state ("reconcile run ns/name"), never the state
// itself, so a flushed or replaced Redis loses nothing that the cluster cannot tell us again.

/** What a job reconciles: a PipelineRun or an AffinityPolicy (node events become work for the runs on them). */
export type WorkKind = "run" | "policy";

/** The kinds of object whose watch events become work (the informer caches of src/kube/informers.ts). */
export type CauseKind =
  | "PipelineRun"
  | "AffinityPolicy"
  | "StatefulSet"
  | "Pod"
  | "Node"
  | "Namespace"
  | "Event";

/**
 * The watch event that made the work: which object, at which resourceVersion. Every replica sees the
 * same event, so it names the job (one job per event, however many replicas enqueue it), and it tells
 * the replica that runs the job which version its cache must have reached first.
 */
export interface WorkCause {
  kind: CauseKind;
  /** Empty for cluster-scoped objects. */
  namespace: string;
  name: string;
  resourceVersion: string;
  /** A DELETED event: the cache has caught up once the object is gone from it. */
  deleted?: boolean;
}

export interface WorkItem {
  kind: WorkKind;
  /** Empty for cluster-scoped objects (nodes). */
  namespace: string;
  name: string;
  /** Absent for work that no single event caused: resyncs and requeue-after. */
  cause?: WorkCause;
}

const KINDS: readonly WorkKind[] = ["run", "policy"];
const CAUSE_KINDS: readonly CauseKind[] = [
  "PipelineRun",
  "AffinityPolicy",
  "StatefulSet",
  "Pod",
  "Node",
  "Namespace",
  "Event",
];

/** One key per object: the BullMQ deduplication id, so work for one object is never run twice at once. */
export function workKey(item: WorkItem): string {
  return `${item.kind}:${item.namespace}/${item.name}`;
}

/**
 * The job id of work caused by one watch event: the same on every replica that saw the event, so
 * BullMQ keeps one job for it. BullMQ reserves ':' in custom ids, and an id must not look like a
 * number (its own counter's ids do): the kind prefix guarantees the latter.
 */
export function eventJobId(item: WorkItem): string | undefined {
  const c = item.cause;
  if (!c) return undefined;
  const id = `${workKey(item)}@${c.kind}/${c.namespace}/${c.name}@${c.resourceVersion}${c.deleted ? "/deleted" : ""}`;
  return id.replaceAll(":", "|");
}

function parseCause(data: unknown): WorkCause | undefined | false {
  if (data === undefined) return undefined;
  if (!data || typeof data !== "object") return false;
  const { kind, namespace, name, resourceVersion, deleted } = data as Record<string, unknown>;
  if (!CAUSE_KINDS.includes(kind as CauseKind)) return false;
  if (typeof namespace !== "string" || typeof name !== "string" || typeof resourceVersion !== "string")
    return false;
  if (deleted !== undefined && typeof deleted !== "boolean") return false;
  return { kind: kind as CauseKind, namespace, name, resourceVersion, ...(deleted ? { deleted } : {}) };
}

/** Validates a payload read back from Redis; anything else is a malformed job. */
export function parseWorkItem(data: unknown): WorkItem | undefined {
  if (!data || typeof data !== "object") return undefined;
  const { kind, namespace, name, cause } = data as Record<string, unknown>;
  if (!KINDS.includes(kind as WorkKind)) return undefined;
  if (typeof namespace !== "string" || typeof name !== "string" || name === "") return undefined;
  const parsedCause = parseCause(cause);
  if (parsedCause === false) return undefined;
  return { kind: kind as WorkKind, namespace, name, ...(parsedCause ? { cause: parsedCause } : {}) };
}

/**
 * Whether a cache that holds `cachedVersion` of the cause's object (undefined: not in the cache) has
 * seen the cause. resourceVersions are opaque to clients; kube-apiserver's are etcd revisions, decimal
 * and increasing, and only then are they compared. Anything else counts as caught up: the wait is an
 * optimisation, never a condition for the work to run.
 */
export function cacheHasSeen(
  cause: WorkCause,
  cachedVersion: string | undefined,
  cacheVersion?: string,
): boolean {
  // The cache as a whole is past the event: it applied it, whatever the object became since (changed
  // again, deleted, or left a label-selected cache).
  if (cacheVersion && /^\d+$/.test(cacheVersion) && /^\d+$/.test(cause.resourceVersion)) {
    if (BigInt(cacheVersion) >= BigInt(cause.resourceVersion)) return true;
  }
  if (!/^\d+$/.test(cause.resourceVersion)) return true;
  if (cachedVersion === undefined) return cause.deleted === true;
  if (!/^\d+$/.test(cachedVersion)) return true;
  const cached = BigInt(cachedVersion);
  const wanted = BigInt(cause.resourceVersion);
  return cause.deleted ? cached > wanted : cached >= wanted;
}
