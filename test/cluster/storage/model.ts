// What the local cluster's storage does, as pure functions of observed objects: which pods may have
// their volumes attached (the attach model) and which PersistentVolume a pending claim gets (the
// provisioner). test/cluster/storage/controller.ts watches the cluster and carries the answers out.
//
// The attach model follows Kubernetes' attach/detach controller: a ReadWriteOnce volume is attached to
// one node at a time; it stays attached while a pod on that node that uses it has not terminated; a
// pod on another node waits (ContainerCreating, a FailedAttachVolume "Multi-Attach" event) until then.
// KWOK starts a pod that uses a claim only once this model has marked it attached (kwok-stages.ts).

import type { V1Node, V1PersistentVolume, V1PersistentVolumeClaim, V1Pod } from "@kubernetes/client-node";

/** Set on a pod once its volumes are attached to its node; KWOK's pod-create stage waits for it. */
export const ATTACHED_ANNOTATION = "attach.harness.tekton-affinity.dev/node";
/** Where volumes keep their data on this machine (a cluster passes its own): a real node mounts it, a
 * local volume's directory must exist before its PV is made. */
export const DEFAULT_VOLUMES_DIR = "/tmp/tekton-affinity-volumes";

/** The provisioners of the harness's dynamic StorageClasses. */
export const LOCAL_PROVISIONER = "harness.tekton-affinity.dev/local";
export const ZONAL_PROVISIONER = "harness.tekton-affinity.dev/zonal";
/** Set by kube-scheduler on a WaitForFirstConsumer claim once it picked the first consumer's node. */
export const SELECTED_NODE_ANNOTATION = "volume.kubernetes.io/selected-node";
export const HOSTNAME_LABEL = "kubernetes.io/hostname";
export const ZONE_LABEL = "topology.kubernetes.io/zone";

const key = (namespace: string | undefined, name: string | undefined) => `${namespace}/${name}`;

/** Claim names a pod mounts. */
export function podClaims(pod: V1Pod): string[] {
  return (pod.spec?.volumes ?? []).flatMap((v) =>
    v.persistentVolumeClaim ? [v.persistentVolumeClaim.claimName] : [],
  );
}

/** A volume only one node may attach at a time: ReadWriteOnce or ReadWriteOncePod, not ReadWriteMany. */
export function isSingleNode(claim: V1PersistentVolumeClaim): boolean {
  const modes = claim.spec?.accessModes ?? [];
  if (modes.includes("ReadWriteMany") || modes.includes("ReadOnlyMany")) return false;
  return modes.includes("ReadWriteOnce") || modes.includes("ReadWriteOncePod");
}

/** A pod that no longer uses its volumes (the kubelet unmounted them). */
export function isTerminated(pod: V1Pod): boolean {
  return pod.status?.phase === "Succeeded" || pod.status?.phase === "Failed";
}

export interface Blocked {
  pod: V1Pod;
  /** The claim and its volume that another node holds. */
  claim: string;
  volume: string;
  node: string;
  /** Pods on that node that hold the volume. */
  holders: string[];
}

export interface AttachDecisions {
  /** Pods whose volumes can be attached now: mark them attached to their node. */
  attach: V1Pod[];
  /** Pods that wait for a volume another node holds (a Multi-Attach error). */
  blocked: Blocked[];
}

/**
 * Decides, for every scheduled pod not yet marked attached, whether its volumes can attach to its node.
 * Pods are taken oldest first, and a pod marked in this pass holds its volumes for the pods after it,
 * so two pods on two nodes never both get one ReadWriteOnce volume.
 */
export function decideAttachments(
  pods: V1Pod[],
  claims: Map<string, V1PersistentVolumeClaim>,
): AttachDecisions {
  // Which node holds each single-node volume (by claim), and through which pods.
  const held = new Map<string, { node: string; pods: string[] }>();
  const hold = (claimKey: string, node: string, pod: string) => {
    const h = held.get(claimKey);
    if (h && h.node === node) h.pods.push(pod);
    else if (!h) held.set(claimKey, { node, pods: [pod] });
  };
  for (const pod of pods) {
    const node = pod.metadata?.annotations?.[ATTACHED_ANNOTATION];
    if (!node || isTerminated(pod)) continue;
    for (const c of podClaims(pod)) hold(key(pod.metadata?.namespace, c), node, pod.metadata?.name ?? "");
  }

  const attach: V1Pod[] = [];
  const blocked: Blocked[] = [];
  const waiting = pods
    .filter(
      (p) =>
        p.spec?.nodeName &&
        !p.metadata?.annotations?.[ATTACHED_ANNOTATION] &&
        !p.metadata?.deletionTimestamp &&
        !isTerminated(p) &&
        podClaims(p).length > 0,
    )
    .sort((a, b) => created(a) - created(b));
  for (const pod of waiting) {
    const node = pod.spec!.nodeName!;
    const ns = pod.metadata?.namespace;
    let wait: Blocked | undefined;
    let unbound = false;
    for (const c of podClaims(pod)) {
      const claim = claims.get(key(ns, c));
      // The kubelet cannot mount a claim that is not bound yet; the scheduler rarely lets this happen.
      if (!claim?.spec?.volumeName || claim.status?.phase !== "Bound") {
        unbound = true;
        continue;
      }
      if (!isSingleNode(claim)) continue;
      const h = held.get(key(ns, c));
      if (h && h.node !== node) {
        wait ??= { pod, claim: c, volume: claim.spec.volumeName, node: h.node, holders: [...h.pods] };
      }
    }
    if (wait) blocked.push(wait);
    else if (!unbound) {
      attach.push(pod);
      for (const c of podClaims(pod)) hold(key(ns, c), node, pod.metadata?.name ?? "");
    }
  }
  return { attach, blocked };
}

function created(pod: V1Pod): number {
  const t = pod.metadata?.creationTimestamp;
  return t ? new Date(t).getTime() : 0;
}

/** The Multi-Attach message Kubernetes' attach/detach controller writes, naming the holders. */
export function multiAttachMessage(b: Blocked): string {
  return `Multi-Attach error for volume "${b.volume}" Volume is already used by pod(s) ${b.holders.join(", ")} on node ${b.node}`;
}

// ---- provisioning ----

export interface StorageClassInfo {
  name: string;
  provisioner: string;
  waitForFirstConsumer: boolean;
  /** parameters.zone: the zone an Immediate zonal volume is made in. */
  zone?: string;
}

export type ProvisionDecision =
  | { type: "provision"; volume: V1PersistentVolume }
  | { type: "wait"; reason: string }
  | { type: "ignore" };

/**
 * The PersistentVolume the harness's provisioners make for a pending claim: a local volume on the node
 * kube-scheduler selected, or a zonal one in that node's zone (WaitForFirstConsumer), in the class's
 * `zone` parameter, or else in `fallbackZone` (Immediate). The PV is pre-bound to the claim (claimRef
 * with its uid), and kube-controller-manager's PV controller completes the binding.
 */
export function decideProvisioning(
  claim: V1PersistentVolumeClaim,
  storageClass: StorageClassInfo | undefined,
  nodes: Map<string, V1Node>,
  fallbackZone: string,
  volumesDir = DEFAULT_VOLUMES_DIR,
): ProvisionDecision {
  if (!storageClass || claim.spec?.volumeName || claim.metadata?.deletionTimestamp) return { type: "ignore" };
  if (![LOCAL_PROVISIONER, ZONAL_PROVISIONER].includes(storageClass.provisioner)) return { type: "ignore" };
  const selected = claim.metadata?.annotations?.[SELECTED_NODE_ANNOTATION];
  const local = storageClass.provisioner === LOCAL_PROVISIONER;
  if ((local || storageClass.waitForFirstConsumer) && !selected) {
    return local && !storageClass.waitForFirstConsumer
      ? { type: "wait", reason: "a local volume needs a node: use volumeBindingMode WaitForFirstConsumer" }
      : { type: "wait", reason: "waiting for the first consumer to be scheduled" };
  }
  let requirement: { key: string; value: string };
  if (local) requirement = { key: HOSTNAME_LABEL, value: selected! };
  else if (selected) {
    const zone = nodes.get(selected)?.metadata?.labels?.[ZONE_LABEL];
    if (!zone) return { type: "wait", reason: `node ${selected} has no ${ZONE_LABEL} label (yet)` };
    requirement = { key: ZONE_LABEL, value: zone };
  } else requirement = { key: ZONE_LABEL, value: storageClass.zone ?? fallbackZone };

  const name = `pvc-${claim.metadata?.uid}`;
  return {
    type: "provision",
    volume: {
      apiVersion: "v1",
      kind: "PersistentVolume",
      metadata: { name, annotations: { "pv.kubernetes.io/provisioned-by": storageClass.provisioner } },
      spec: {
        storageClassName: storageClass.name,
        capacity: { storage: claim.spec?.resources?.requests?.storage ?? "1Gi" },
        accessModes: claim.spec?.accessModes ?? ["ReadWriteOnce"],
        persistentVolumeReclaimPolicy: "Delete",
        volumeMode: claim.spec?.volumeMode ?? "Filesystem",
        claimRef: {
          apiVersion: "v1",
          kind: "PersistentVolumeClaim",
          namespace: claim.metadata?.namespace,
          name: claim.metadata?.name,
          uid: claim.metadata?.uid,
        },
        ...(local
          ? { local: { path: `${volumesDir}/${name}` } }
          : { hostPath: { path: `${volumesDir}/${name}`, type: "DirectoryOrCreate" } }),
        nodeAffinity: {
          required: {
            nodeSelectorTerms: [
              { matchExpressions: [{ key: requirement.key, operator: "In", values: [requirement.value] }] },
            ],
          },
        },
      },
    },
  };
}
