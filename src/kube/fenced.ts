// Writes fenced by resourceVersion: a merge patch that carries the resourceVersion we read fails with
// 409 Conflict if the object changed since, so a stale view (or a replica whose lock lapsed) can never
// overwrite newer state. The caller retries from fresh state.

import type {
  AppsV1Api,
  CoreV1Api,
  CustomObjectsApi,
  V1PersistentVolumeClaim,
  V1Pod,
  V1StatefulSet,
} from "@kubernetes/client-node";
import { TEKTON_GROUP, TEKTON_VERSION } from "../api/constants.js";
import type { PipelineRun } from "../api/types.js";
import { isConflict, isNotFound, jsonPatch, mergePatch } from "./clients.js";

export async function patchRunFenced(
  custom: CustomObjectsApi,
  run: PipelineRun,
  body: { metadata?: object; spec?: object },
): Promise<PipelineRun> {
  return (await custom.patchNamespacedCustomObject(
    {
      group: TEKTON_GROUP,
      version: TEKTON_VERSION,
      plural: "pipelineruns",
      namespace: run.metadata.namespace,
      name: run.metadata.name,
      body: {
        ...body,
        metadata: { ...(body.metadata ?? {}), resourceVersion: run.metadata.resourceVersion },
      },
    },
    mergePatch(),
  )) as PipelineRun;
}

/** Merges `status` into a run's status subresource, fenced like patchRunFenced. */
export async function patchRunStatusFenced(
  custom: CustomObjectsApi,
  run: PipelineRun,
  status: object,
): Promise<void> {
  await custom.patchNamespacedCustomObjectStatus(
    {
      group: TEKTON_GROUP,
      version: TEKTON_VERSION,
      plural: "pipelineruns",
      namespace: run.metadata.namespace,
      name: run.metadata.name,
      body: { metadata: { resourceVersion: run.metadata.resourceVersion }, status },
    },
    mergePatch(),
  );
}

/** Sets (or, with null, removes) annotations on a StatefulSet. */
export async function annotateSetFenced(
  apps: AppsV1Api,
  set: V1StatefulSet,
  annotations: Record<string, string | null>,
): Promise<void> {
  await apps.patchNamespacedStatefulSet(
    {
      name: set.metadata?.name ?? "",
      namespace: set.metadata?.namespace ?? "",
      body: { metadata: { resourceVersion: set.metadata?.resourceVersion, annotations } },
    },
    mergePatch(),
  );
}

/** The finalizer the apiserver puts on every claim, which keeps a deleted one Terminating while any pod
 * that uses it is not gone yet (a placeholder still shutting down, a finished task pod). */
export const PVC_PROTECTION_FINALIZER = "kubernetes.io/pvc-protection";

/**
 * Deletes a claim and drops its protection finalizer, as Tekton does for the claims its affinity
 * assistant cleans up (PurgeFinalizerAndDeletePVCForWorkspace): the claim is gone, not Terminating,
 * and its volume is released at once. Fenced twice: the delete by the claim's uid, the patch by a
 * JSON-patch test of the finalizers we read, so another finalizer added since is never dropped.
 * The caller decides that the claim is ours (owned by the finished run).
 */
export async function purgeClaim(core: CoreV1Api, claim: V1PersistentVolumeClaim): Promise<void> {
  const { name = "", namespace = "", uid } = claim.metadata ?? {};
  await core.deleteNamespacedPersistentVolumeClaim({ name, namespace, body: { preconditions: { uid } } });
  const finalizers = claim.metadata?.finalizers ?? [];
  if (!finalizers.includes(PVC_PROTECTION_FINALIZER)) return;
  await core.patchNamespacedPersistentVolumeClaim(
    {
      name,
      namespace,
      body: [
        { op: "test", path: "/metadata/uid", value: uid },
        { op: "test", path: "/metadata/finalizers", value: finalizers },
        {
          op: "replace",
          path: "/metadata/finalizers",
          value: finalizers.filter((f) => f !== PVC_PROTECTION_FINALIZER),
        },
      ],
    },
    jsonPatch(),
  );
}

/** A delete that finds its object gone (404), or another object under its name (409: the uid precondition
 * failed), has nothing left to do: the one we read is gone either way. */
function ignoreGone(err: unknown): void {
  if (!isNotFound(err) && !isConflict(err)) throw err;
}

/** Deletes the StatefulSet we read, not a newer one of the same name (uid precondition); its pods go with
 * it in the background. */
export async function deleteStatefulSetFenced(apps: AppsV1Api, set: V1StatefulSet): Promise<void> {
  const { name = "", namespace = "", uid } = set.metadata ?? {};
  await apps
    .deleteNamespacedStatefulSet({
      name,
      namespace,
      body: { preconditions: { uid }, propagationPolicy: "Background" },
    })
    .catch(ignoreGone);
}

/** Deletes the pod we read, not a newer one of the same name (uid precondition). `gracePeriodSeconds`
 * 0 removes it without waiting for its kubelet; unset, the pod's own grace period applies. */
export async function deletePodFenced(
  core: CoreV1Api,
  pod: V1Pod,
  options: { gracePeriodSeconds?: number } = {},
): Promise<void> {
  const { name = "", namespace = "", uid } = pod.metadata ?? {};
  await core
    .deleteNamespacedPod({ name, namespace, body: { preconditions: { uid }, ...options } })
    .catch(ignoreGone);
}
