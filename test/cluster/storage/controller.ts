// The local cluster's storage, run as one more control-plane process (`storage-controller`):
//  - the attach model: marks a pod's volumes attached to its node when model.ts allows it, and otherwise
//    records a FailedAttachVolume "Multi-Attach" event on the pod, as Kubernetes does, every few seconds
//    while it waits (count and lastTimestamp grow, so "how long it was stuck" can be read back);
//  - the provisioners of the `local-wffc`, `zonal` and `zonal-wffc` StorageClasses;
//  - deletes the volumes they made once released.
//
//   tsx test/cluster/storage/controller.ts --kubeconfig <path> --port <health port> --volumes-dir <dir>

import { chmodSync, mkdirSync } from "node:fs";
import { createServer } from "node:http";
import * as k8s from "@kubernetes/client-node";
import {
  ATTACHED_ANNOTATION,
  type Blocked,
  decideAttachments,
  decideProvisioning,
  LOCAL_PROVISIONER,
  multiAttachMessage,
  type StorageClassInfo,
  ZONAL_PROVISIONER,
  ZONE_LABEL,
} from "./model.js";

/** How often a waiting pod's Multi-Attach event is repeated (its count grows). */
const REPEAT_MS = 2000;
/** How soon after a change a pass runs (changes arriving together are handled in one pass). */
const DEBOUNCE_MS = 20;

type Obj = k8s.KubernetesObject;

function arg(name: string): string {
  const i = process.argv.indexOf(`--${name}`);
  const value = i >= 0 ? process.argv[i + 1] : undefined;
  if (!value) throw new Error(`storage-controller: --${name} <value> is required`);
  return value;
}

const kc = new k8s.KubeConfig();
kc.loadFromFile(arg("kubeconfig"));
const VOLUMES_DIR = arg("volumes-dir");
const core = kc.makeApiClient(k8s.CoreV1Api);
const storage = kc.makeApiClient(k8s.StorageV1Api);
const mergePatch = k8s.setHeaderOptions("Content-Type", k8s.PatchStrategy.MergePatch);

const keyOf = (o: Obj) => `${o.metadata?.namespace ?? ""}/${o.metadata?.name}`;

/** An informer whose objects are kept in a map, each change scheduling a pass. */
function watch<T extends Obj>(path: string, list: () => Promise<k8s.KubernetesListObject<T>>) {
  const objects = new Map<string, T>();
  const informer = k8s.makeInformer(kc, path, list);
  const put = (o: T) => {
    objects.set(keyOf(o), o);
    schedule();
  };
  informer.on("add", put);
  informer.on("update", put);
  informer.on("delete", (o: T) => {
    objects.delete(keyOf(o));
    schedule();
  });
  informer.on("error", () => setTimeout(() => void informer.start().catch(() => undefined), 1000));
  return { objects, start: () => informer.start() };
}

const pods = watch<k8s.V1Pod>("/api/v1/pods", () => core.listPodForAllNamespaces());
const claims = watch<k8s.V1PersistentVolumeClaim>("/api/v1/persistentvolumeclaims", () =>
  core.listPersistentVolumeClaimForAllNamespaces(),
);
const volumes = watch<k8s.V1PersistentVolume>("/api/v1/persistentvolumes", () => core.listPersistentVolume());
const nodes = watch<k8s.V1Node>("/api/v1/nodes", () => core.listNode());
const classes = watch<k8s.V1StorageClass>("/apis/storage.k8s.io/v1/storageclasses", () =>
  storage.listStorageClass(),
);

let passPending = false;
let running = false;
let again = false;
function schedule(): void {
  if (running) {
    again = true;
    return;
  }
  startPass(DEBOUNCE_MS);
}

function startPass(afterMs: number): void {
  if (passPending) return;
  passPending = true;
  setTimeout(() => void pass(), afterMs);
}

/** Pods marked by us whose update the watch has not delivered yet: they hold their volumes already. */
const markedNotSeen = new Map<string, string>();
/** When each waiting pod's event was last written, and the event's count. */
const lastEvent = new Map<string, { at: number; count: number; name: string }>();

async function pass(): Promise<void> {
  passPending = false;
  running = true;
  try {
    await attachPass();
    await provisionPass();
    await cleanupPass();
  } catch (err) {
    console.error(`storage-controller: ${(err as Error).message}`);
    again = true;
  } finally {
    running = false;
    if (again) {
      again = false;
      startPass(DEBOUNCE_MS * 5);
    }
  }
}

async function attachPass(): Promise<void> {
  const view = [...pods.objects.values()].map((p) => {
    const node = markedNotSeen.get(p.metadata?.uid ?? "");
    if (!node || p.metadata?.annotations?.[ATTACHED_ANNOTATION]) return p;
    return {
      ...p,
      metadata: { ...p.metadata, annotations: { ...p.metadata?.annotations, [ATTACHED_ANNOTATION]: node } },
    };
  });
  const present = new Set([...pods.objects.values()].map((p) => p.metadata?.uid ?? ""));
  for (const p of pods.objects.values()) {
    if (p.metadata?.annotations?.[ATTACHED_ANNOTATION]) markedNotSeen.delete(p.metadata.uid ?? "");
  }
  for (const uid of markedNotSeen.keys()) if (!present.has(uid)) markedNotSeen.delete(uid);
  const { attach, blocked } = decideAttachments(view, claims.objects);
  for (const pod of attach) {
    const node = pod.spec!.nodeName!;
    markedNotSeen.set(pod.metadata?.uid ?? "", node);
    await core
      .patchNamespacedPod(
        {
          name: pod.metadata!.name!,
          namespace: pod.metadata!.namespace!,
          body: { metadata: { annotations: { [ATTACHED_ANNOTATION]: node } } },
        },
        mergePatch,
      )
      .catch((err: { code?: number }) => {
        markedNotSeen.delete(pod.metadata?.uid ?? "");
        if (err.code !== 404) throw err;
      });
  }
  const waitingNow = new Set(blocked.map((b) => b.pod.metadata?.uid ?? ""));
  for (const uid of lastEvent.keys()) if (!waitingNow.has(uid)) lastEvent.delete(uid);
  for (const b of blocked) await recordMultiAttach(b);
  // Repeat the event while a pod waits, even when nothing changes.
  if (blocked.length) setTimeout(schedule, REPEAT_MS).unref();
}

async function recordMultiAttach(b: Blocked): Promise<void> {
  const uid = b.pod.metadata?.uid ?? "";
  const now = Date.now();
  const last = lastEvent.get(uid);
  if (last && now - last.at < REPEAT_MS) return;
  const namespace = b.pod.metadata!.namespace!;
  const message = multiAttachMessage(b);
  if (last) {
    const count = last.count + 1;
    lastEvent.set(uid, { ...last, at: now, count });
    await core
      .patchNamespacedEvent(
        { name: last.name, namespace, body: { count, lastTimestamp: new Date(now), message } },
        mergePatch,
      )
      .catch(() => undefined);
    return;
  }
  const name = `${b.pod.metadata!.name}.${now.toString(16)}`;
  lastEvent.set(uid, { at: now, count: 1, name });
  await core
    .createNamespacedEvent({
      namespace,
      body: {
        metadata: { name, namespace },
        involvedObject: {
          apiVersion: "v1",
          kind: "Pod",
          name: b.pod.metadata!.name,
          namespace,
          uid,
        },
        reason: "FailedAttachVolume",
        type: "Warning",
        message,
        source: { component: "attachdetach-controller" },
        firstTimestamp: new Date(now),
        lastTimestamp: new Date(now),
        count: 1,
      },
    })
    .catch(() => undefined);
}

function storageClassInfo(name: string | undefined): StorageClassInfo | undefined {
  const sc = name ? classes.objects.get(`/${name}`) : undefined;
  if (!sc) return undefined;
  return {
    name: sc.metadata!.name!,
    provisioner: sc.provisioner,
    waitForFirstConsumer: sc.volumeBindingMode === "WaitForFirstConsumer",
    zone: sc.parameters?.zone,
  };
}

/** Immediate zonal volumes without a zone parameter go round the zones. */
let nextZone = 0;
const made = new Set<string>();

async function provisionPass(): Promise<void> {
  const zones = [...new Set([...nodes.objects.values()].map((n) => n.metadata?.labels?.[ZONE_LABEL]))]
    .filter((z): z is string => !!z)
    .sort();
  const nodesByName = new Map([...nodes.objects.values()].map((n) => [n.metadata!.name!, n]));
  for (const claim of claims.objects.values()) {
    if (claim.status?.phase === "Bound") continue;
    const fallbackZone = zones.length ? zones[nextZone % zones.length]! : "zone-a";
    const decision = decideProvisioning(
      claim,
      storageClassInfo(claim.spec?.storageClassName),
      nodesByName,
      fallbackZone,
      VOLUMES_DIR,
    );
    if (decision.type !== "provision") continue;
    const name = decision.volume.metadata!.name!;
    if (made.has(name) || volumes.objects.has(`/${name}`)) continue;
    if (!claim.metadata?.annotations?.["volume.kubernetes.io/selected-node"]) nextZone++;
    made.add(name);
    // World-writable, as a fresh filesystem is to a pod that runs as any user (a real node mounts it).
    const path = decision.volume.spec?.local?.path ?? decision.volume.spec?.hostPath?.path;
    if (path) {
      mkdirSync(path, { recursive: true });
      chmodSync(path, 0o777);
    }
    await core.createPersistentVolume({ body: decision.volume }).catch((err: { code?: number }) => {
      if (err.code !== 409) {
        made.delete(name);
        throw err;
      }
    });
  }
}

/** Reclaim policy Delete, as a real provisioner does it: a released volume of ours goes. */
async function cleanupPass(): Promise<void> {
  for (const pv of volumes.objects.values()) {
    const by = pv.metadata?.annotations?.["pv.kubernetes.io/provisioned-by"];
    if (pv.status?.phase !== "Released" || (by !== LOCAL_PROVISIONER && by !== ZONAL_PROVISIONER)) continue;
    if (pv.metadata?.deletionTimestamp) continue;
    await core.deletePersistentVolume({ name: pv.metadata!.name! }).catch(() => undefined);
  }
}

for (const w of [classes, nodes, claims, volumes, pods]) await w.start();
// Health for the harness: up once every informer has listed.
createServer((_, res) => res.writeHead(200).end("ok")).listen(Number(arg("port")), "127.0.0.1");
console.error("storage-controller: watching");
process.once("SIGTERM", () => process.exit(0));
