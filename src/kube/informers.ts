// Informer caches: the observed state every webhook answer and every reconcile reads from.
// The webhooks' hot path only ever reads these caches; it never calls the API.

import * as k8s from "@kubernetes/client-node";
import type { Logger } from "pino";
import {
  COMPONENT_LABEL,
  GROUP,
  MANAGED,
  MANAGED_LABEL,
  PLACEHOLDER_COMPONENT,
  PLURAL,
  RELEASED,
  RESERVATION_COMPONENT,
  TEKTON_GROUP,
  TEKTON_VERSION,
  VERSION,
} from "../api/constants.js";
import type { AffinityPolicy, PipelineRun } from "../api/types.js";
import {
  type Trim,
  TrimmingWatch,
  trimList,
  trimNamespace,
  trimNode,
  trimPlaceholderPod,
  trimPlaceholderSet,
  trimRun,
  withoutManagedFields,
} from "./trim.js";

export type Handler<T> = (obj: T) => void;

/** The longest pause between two attempts to list or watch again. */
const MAX_RETRY_MS = 30_000;

/** Objects per page of a list. A list is read page by page and each page trimmed before the next is read:
 * a relist of thousands of large objects (a tenant's decoys wearing our labels, with megabytes of
 * annotations) never holds more than one page of them untrimmed. 100, not kubectl's 500: with 3,000
 * decoys of 50 KB a fresh replica settled at 199 MB of RSS with pages of 100, at 344 MB with pages of 500
 * (bench/decoys.ts); a cluster of 10,000 runs lists in 100 requests. */
export const LIST_PAGE_SIZE = 100;

/** One page of a list: `limit` objects from `_continue` (absent: the first page). */
export type ListPage<T extends k8s.KubernetesObject> = (page: {
  limit: number;
  _continue?: string;
}) => Promise<k8s.KubernetesListObject<T>>;

/** Every object of a paginated list, each page trimmed as it arrives; the metadata of the last page (its
 * resourceVersion is the list's: every page of one list is read at the first page's). */
export async function listAllTrimmed<T extends k8s.KubernetesObject>(
  list: ListPage<T>,
  trim: Trim<T>,
  limit = LIST_PAGE_SIZE,
): Promise<k8s.KubernetesListObject<T>> {
  const items: T[] = [];
  let page: k8s.KubernetesListObject<T>;
  let next: string | undefined;
  do {
    page = trimList(await list({ limit, ...(next ? { _continue: next } : {}) }), trim);
    items.push(...page.items);
    next = page.metadata?._continue || undefined;
  } while (next);
  return { ...page, metadata: { ...page.metadata, _continue: undefined }, items };
}

/**
 * One watched resource: a cache plus add/update/delete fan-out, restarted after watch errors.
 *
 * `start()` resolves only once a list has succeeded: client-node's informer resolves its start even
 * when the list fails (an apiserver 429 or 5xx, missing RBAC), and a replica that then reported Ready
 * would answer admissions from an empty cache. A failed list or watch is retried with capped
 * exponential backoff (1 s doubling to 30 s), and `synced` stays false until a list succeeds.
 *
 * Every object is trimmed before it is cached (`trim`, default: without managedFields; see trim.ts).
 */
export class WatchedCache<T extends k8s.KubernetesObject> {
  private readonly informer: k8s.Informer<T> & k8s.ObjectCache<T>;
  private readonly handlers: { change: Handler<T>[]; delete: Handler<T>[] } = { change: [], delete: [] };
  private stopped = false;
  private failures = 0;
  private markSynced!: () => void;
  private readonly firstSync = new Promise<void>((resolve) => {
    this.markSynced = resolve;
  });
  /** True once a list has succeeded: from then on the cache holds the cluster's objects. */
  synced = false;
  /**
   * The resourceVersion of the last list or event this cache applied. A watch delivers its events in
   * resourceVersion order, so an event at version V has been applied once this is at least V, even if
   * the object has changed or gone since (a job waits on it; see the controller's catchUpWith).
   */
  lastResourceVersion?: string;

  constructor(
    readonly kind: string,
    kc: k8s.KubeConfig,
    path: string,
    list: ListPage<T>,
    private readonly logger: Logger,
    labelSelector?: string,
    fieldSelector?: string,
    trim: Trim<T> = withoutManagedFields,
  ) {
    const listed = async () => {
      const result = await listAllTrimmed(list, trim);
      this.failures = 0;
      if (result.metadata?.resourceVersion) this.lastResourceVersion = result.metadata.resourceVersion;
      if (!this.synced) {
        this.synced = true;
        // After the informer has put the listed objects in its cache (it does so once we return).
        setImmediate(this.markSynced);
      }
      return result;
    };
    this.informer = new k8s.ListWatch(
      path,
      new TrimmingWatch(kc, trim),
      listed,
      false,
      labelSelector,
      fieldSelector,
    );
    // Any event proves the watch works again: the next failure starts the backoff from 1 s.
    this.informer.on("add", (o) => this.emit("change", o));
    this.informer.on("update", (o) => this.emit("change", o));
    this.informer.on("delete", (o) => this.emit("delete", o));
    this.informer.on("error", (err) => {
      if (this.stopped) return;
      this.failures++;
      const retryMs = Math.min(MAX_RETRY_MS, 1000 * 2 ** (this.failures - 1));
      this.logger.warn(
        { kind, err: String(err), synced: this.synced, attempt: this.failures, retryMs },
        this.synced
          ? "watch failed; restarting"
          : "initial list failed; this replica stays unready, retrying",
      );
      setTimeout(() => void this.restart(), retryMs).unref();
    });
  }

  onChange(h: Handler<T>): void {
    this.handlers.change.push(h);
  }
  onDelete(h: Handler<T>): void {
    this.handlers.delete.push(h);
  }

  private emit(event: "change" | "delete", obj: T): void {
    this.failures = 0;
    // After the informer applied it to its cache (it calls us once it has).
    if (obj.metadata?.resourceVersion) this.lastResourceVersion = obj.metadata.resourceVersion;
    for (const h of this.handlers[event]) {
      try {
        h(obj);
      } catch (err) {
        this.logger.error({ kind: this.kind, err: String(err) }, "event handler failed");
      }
    }
  }

  /** Resolves once a list has succeeded and its objects are in the cache (retrying until then). */
  async start(): Promise<void> {
    this.stopped = false;
    await this.informer.start();
    await this.firstSync;
  }

  private async restart(): Promise<void> {
    if (this.stopped) return;
    await this.informer.start().catch(() => undefined);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.informer.stop();
  }

  get(name: string, namespace?: string): T | undefined {
    return this.informer.get(name, namespace);
  }

  list(namespace?: string): readonly T[] {
    return this.informer.list(namespace);
  }
}

export interface Caches {
  runs: WatchedCache<PipelineRun & k8s.KubernetesObject>;
  policies: WatchedCache<AffinityPolicy & k8s.KubernetesObject>;
  placeholderSets: WatchedCache<k8s.V1StatefulSet>;
  placeholderPods: WatchedCache<k8s.V1Pod>;
  nodes: WatchedCache<k8s.V1Node>;
  /** Namespaces, for their isolation-group label (set by cluster admins). */
  namespaces: WatchedCache<k8s.V1Namespace>;
  /** FailedCreate events of StatefulSets: why a placeholder pod could not be created (quota, Pod Security). */
  failedCreates: WatchedCache<k8s.CoreV1Event>;
}

const FAILED_CREATE_EVENTS = "involvedObject.kind=StatefulSet,reason=FailedCreate";

export function makeCaches(kc: k8s.KubeConfig, logger: Logger): Caches {
  const custom = kc.makeApiClient(k8s.CustomObjectsApi);
  const apps = kc.makeApiClient(k8s.AppsV1Api);
  const core = kc.makeApiClient(k8s.CoreV1Api);
  // Placeholders and the reservations that hold room beside them (reserve: LargestTask).
  const placeholders = `${COMPONENT_LABEL} in (${PLACEHOLDER_COMPONENT},${RESERVATION_COMPONENT})`;
  // Only the runs the gate marked as ours (and those released from it, for their clean-up): a cluster's
  // other runs (often most of them) cost no memory.
  const managed = `${MANAGED_LABEL} in (${MANAGED},${RELEASED})`;
  return {
    runs: new WatchedCache(
      "PipelineRun",
      kc,
      `/apis/${TEKTON_GROUP}/${TEKTON_VERSION}/pipelineruns`,
      (page) =>
        custom.listClusterCustomObject({
          group: TEKTON_GROUP,
          version: TEKTON_VERSION,
          plural: "pipelineruns",
          labelSelector: managed,
          ...page,
        }),
      logger,
      managed,
      undefined,
      trimRun,
    ),
    policies: new WatchedCache(
      "AffinityPolicy",
      kc,
      `/apis/${GROUP}/${VERSION}/${PLURAL}`,
      (page) => custom.listClusterCustomObject({ group: GROUP, version: VERSION, plural: PLURAL, ...page }),
      logger,
    ),
    placeholderSets: new WatchedCache(
      "StatefulSet",
      kc,
      "/apis/apps/v1/statefulsets",
      (page) => apps.listStatefulSetForAllNamespaces({ labelSelector: placeholders, ...page }),
      logger,
      placeholders,
      undefined,
      trimPlaceholderSet,
    ),
    placeholderPods: new WatchedCache(
      "Pod",
      kc,
      "/api/v1/pods",
      (page) => core.listPodForAllNamespaces({ labelSelector: placeholders, ...page }),
      logger,
      placeholders,
      undefined,
      trimPlaceholderPod,
    ),
    // Every node of the cluster, so only the fields placement and migration read (trim.ts).
    nodes: new WatchedCache(
      "Node",
      kc,
      "/api/v1/nodes",
      (page) => core.listNode(page),
      logger,
      undefined,
      undefined,
      trimNode,
    ),
    namespaces: new WatchedCache(
      "Namespace",
      kc,
      "/api/v1/namespaces",
      (page) => core.listNamespace(page),
      logger,
      undefined,
      undefined,
      trimNamespace,
    ),
    failedCreates: new WatchedCache(
      "Event",
      kc,
      "/api/v1/events",
      (page) => core.listEventForAllNamespaces({ fieldSelector: FAILED_CREATE_EVENTS, ...page }),
      logger,
      undefined,
      FAILED_CREATE_EVENTS,
    ),
  };
}

export async function startCaches(caches: Caches): Promise<void> {
  await Promise.all(Object.values(caches).map((c: WatchedCache<k8s.KubernetesObject>) => c.start()));
}

export async function stopCaches(caches: Caches): Promise<void> {
  await Promise.all(Object.values(caches).map((c: WatchedCache<k8s.KubernetesObject>) => c.stop()));
}
