// Writes fenced by resourceVersion: a merge patch that carries the resourceVersion we read fails with
// 409 Conflict if the object changed since, so a stale view (or a replica whose lock lapsed) can never
// overwrite newer state. The caller retries from fresh state.

import type { AppsV1Api, CustomObjectsApi, V1StatefulSet } from "@kubernetes/client-node";
import { TEKTON_GROUP, TEKTON_VERSION } from "../api/constants.js";
import type { PipelineRun } from "../api/types.js";
import { mergePatch } from "./clients.js";

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
