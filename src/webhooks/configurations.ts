// Our webhook configurations. They are installed with the release (deploy/base/webhooks.yaml, generated
// from webhookConfigurations and checked by a unit test), so that uninstalling removes them; every
// replica then patches only their caBundle to match the serving certificate it manages. Out of a cluster
// install (local clusters, tests: --create-webhook-configurations) a replica applies them whole.
//
// failurePolicy, chosen per webhook:
//  - pipelineruns (gate): Ignore. PipelineRuns of every namespace pass through it, including namespaces
//    with no policy; a controller outage must not stop a whole cluster's CI. A run admitted ungated while
//    we were down is simply not co-scheduled (its pods carry no managed label).
//  - pipelinerun-marks (UPDATE of managed runs): Ignore, as the gate; while we are down a user can
//    change our marks, and the run reconciler takes what it then reads.
//  - pods: Fail. Only pods of managed runs reach it (objectSelector on our label), and such a pod
//    scheduled without its affinity could land away from its RWO volume. The cost: Tekton does not
//    retry a pod creation the webhook failed, it fails that TaskRun (PodCreationFailed), so an admission
//    in flight on a replica that crashes fails its run. Several replicas, a PDB and a graceful SIGTERM
//    keep that to crashes. No other pod in the cluster is ever sent here.
//  - affinitypolicies (validation): Fail. It only guards our own objects; an invalid policy must not slip in.

import type { KubernetesObject } from "@kubernetes/client-node";
import { GROUP, MANAGED_LABEL, PLACEMENT_LABEL, PLURAL, TEKTON_GROUP, VERSION } from "../api/constants.js";
import { PATHS } from "./server.js";

export const CONFIGURATION_NAME = "tekton-affinity";

export interface WebhookEndpoint {
  caBundle: string;
  /** e.g. "https://127.0.0.1:9443": the apiserver calls this base URL (local clusters, tests). */
  url?: string;
  /** Otherwise the in-cluster Service. */
  service?: { name: string; namespace: string; port: number };
  /** Namespaces never gated (the controller's own, kube-system). */
  excludedNamespaces: string[];
}

function clientConfig(e: WebhookEndpoint, path: string) {
  return e.url
    ? { url: `${e.url}${path}`, caBundle: e.caBundle }
    : { service: { ...e.service!, path }, caBundle: e.caBundle };
}

/** The part of a configuration a replica keeps when the configurations are installed with the release:
 * each webhook's caBundle, by webhook name. */
export function caBundleOnly(configuration: KubernetesObject, caBundle: string): KubernetesObject {
  const webhooks = (configuration as { webhooks?: { name: string }[] }).webhooks ?? [];
  return {
    apiVersion: configuration.apiVersion,
    kind: configuration.kind,
    metadata: { name: configuration.metadata?.name },
    webhooks: webhooks.map((w) => ({ name: w.name, clientConfig: { caBundle } })),
  } as KubernetesObject;
}

export function webhookConfigurations(e: WebhookEndpoint): KubernetesObject[] {
  const common = { admissionReviewVersions: ["v1"], sideEffects: "None", timeoutSeconds: 5 };
  const notExcluded = {
    matchExpressions: [
      { key: "kubernetes.io/metadata.name", operator: "NotIn", values: e.excludedNamespaces },
    ],
  };
  const mutating = {
    apiVersion: "admissionregistration.k8s.io/v1",
    kind: "MutatingWebhookConfiguration",
    metadata: { name: CONFIGURATION_NAME, labels: { "app.kubernetes.io/name": "tekton-affinity" } },
    webhooks: [
      {
        ...common,
        name: `pipelineruns.${GROUP}`,
        clientConfig: clientConfig(e, PATHS.pipelineRuns),
        rules: [
          {
            apiGroups: [TEKTON_GROUP],
            apiVersions: ["v1", "v1beta1"],
            operations: ["CREATE"],
            resources: ["pipelineruns"],
          },
        ],
        failurePolicy: "Ignore",
        namespaceSelector: notExcluded,
        reinvocationPolicy: "Never",
      },
      {
        ...common,
        // Our marks hold on UPDATE (gate.ts guardMarks). Only runs that carry, or carried, our managed
        // label: the apiserver matches an UPDATE's objectSelector on the old object and on the new one.
        name: `pipelinerun-marks.${GROUP}`,
        clientConfig: clientConfig(e, PATHS.pipelineRunMarks),
        rules: [
          {
            apiGroups: [TEKTON_GROUP],
            apiVersions: ["v1", "v1beta1"],
            operations: ["UPDATE"],
            resources: ["pipelineruns"],
          },
        ],
        failurePolicy: "Ignore",
        objectSelector: { matchLabels: { [MANAGED_LABEL]: "true" } },
        namespaceSelector: notExcluded,
        reinvocationPolicy: "Never",
      },
      {
        ...common,
        name: `pods.${GROUP}`,
        clientConfig: clientConfig(e, PATHS.pods),
        rules: [{ apiGroups: [""], apiVersions: ["v1"], operations: ["CREATE"], resources: ["pods"] }],
        failurePolicy: "Fail",
        // Pods of runs that carry their placement (run-placement.ts) need nothing from us.
        objectSelector: {
          matchLabels: { [MANAGED_LABEL]: "true" },
          matchExpressions: [{ key: PLACEMENT_LABEL, operator: "DoesNotExist" }],
        },
        namespaceSelector: notExcluded,
        reinvocationPolicy: "IfNeeded",
      },
    ],
  };
  const validating = {
    apiVersion: "admissionregistration.k8s.io/v1",
    kind: "ValidatingWebhookConfiguration",
    metadata: { name: CONFIGURATION_NAME, labels: { "app.kubernetes.io/name": "tekton-affinity" } },
    webhooks: [
      {
        ...common,
        name: `${PLURAL}.${GROUP}`,
        clientConfig: clientConfig(e, PATHS.policies),
        rules: [
          {
            apiGroups: [GROUP],
            apiVersions: [VERSION],
            operations: ["CREATE", "UPDATE"],
            resources: [PLURAL],
          },
        ],
        failurePolicy: "Fail",
      },
    ],
  };
  return [mutating, validating] as KubernetesObject[];
}
