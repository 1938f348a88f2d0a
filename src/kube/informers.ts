// Informer caches: the observed state every webhook answer and every reconcile reads from.
// The webhooks' hot path only ever reads these caches; it never calls the API.

import * as k8s from "@kubernetes/client-node";
import type { Logger } from "pino";
import {
  COMPONENT_LABEL,
  GROUP,
  PLACEHOLDER_COMPONENT,
  PLURAL,
  TEKTON_GROUP,
  TEKTON_VERSION,
  VERSION,
} from "../api/constants.js";
import type { AffinityPolicy, PipelineRun } from "../api/types.js";

export type Handler<T> = (obj: T, old?: T) => void;

/** One watched resource: a cache plus add/update/delete fan-out, restarted after watch errors. */
export class WatchedCache<T extends k8s.KubernetesObject> {
  private readonly informer: k8s.Informer<T> & k8s.ObjectCache<T>;
  private readonly handlers: { change: Handler<T>[]; delete: Handler<T>[] } = { change: [], delete: [] };
  private stopped = false;

  constructor(
    readonly kind: string,
    kc: k8s.KubeConfig,
    path: string,
    list: () => Promise<k8s.KubernetesListObject<T>>,
    private readonly logger: Logger,
    labelSelector?: string,
    fieldSelector?: string,
  ) {
    this.informer = new k8s.ListWatch(path, new k8s.Watch(kc), list, false, labelSelector, fieldSelector);
    this.informer.on("add", (o) => this.emit("change", o));
    this.informer.on("update", (o) => this.emit("change", o));
    this.informer.on("delete", (o) => this.emit("delete", o));
    this.informer.on("error", (err) => {
      if (this.stopped) return;
      this.logger.warn({ kind, err: String(err) }, "watch failed; restarting in 1s");
      setTimeout(() => this.start().catch(() => undefined), 1000).unref();
    });
  }

  onChange(h: Handler<T>): void {
    this.handlers.change.push(h);
  }
  onDelete(h: Handler<T>): void {
    this.handlers.delete.push(h);
  }

  private emit(event: "change" | "delete", obj: T): void {
    for (const h of this.handlers[event]) {
      try {
        h(obj);
      } catch (err) {
        this.logger.error({ kind: this.kind, err: String(err) }, "event handler failed");
      }
    }
  }

  /** Resolves once the initial list is in the cache. */
  async start(): Promise<void> {
    this.stopped = false;
    await this.informer.start();
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
  const placeholders = `${COMPONENT_LABEL}=${PLACEHOLDER_COMPONENT}`;
  return {
    runs: new WatchedCache(
      "PipelineRun",
      kc,
      `/apis/${TEKTON_GROUP}/${TEKTON_VERSION}/pipelineruns`,
      () =>
        custom.listClusterCustomObject({
          group: TEKTON_GROUP,
          version: TEKTON_VERSION,
          plural: "pipelineruns",
        }),
      logger,
    ),
    policies: new WatchedCache(
      "AffinityPolicy",
      kc,
      `/apis/${GROUP}/${VERSION}/${PLURAL}`,
      () => custom.listClusterCustomObject({ group: GROUP, version: VERSION, plural: PLURAL }),
      logger,
    ),
    placeholderSets: new WatchedCache(
      "StatefulSet",
      kc,
      "/apis/apps/v1/statefulsets",
      () => apps.listStatefulSetForAllNamespaces({ labelSelector: placeholders }),
      logger,
      placeholders,
    ),
    placeholderPods: new WatchedCache(
      "Pod",
      kc,
      "/api/v1/pods",
      () => core.listPodForAllNamespaces({ labelSelector: placeholders }),
      logger,
      placeholders,
    ),
    nodes: new WatchedCache("Node", kc, "/api/v1/nodes", () => core.listNode(), logger),
    namespaces: new WatchedCache("Namespace", kc, "/api/v1/namespaces", () => core.listNamespace(), logger),
    failedCreates: new WatchedCache(
      "Event",
      kc,
      "/api/v1/events",
      () => core.listEventForAllNamespaces({ fieldSelector: FAILED_CREATE_EVENTS }),
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
