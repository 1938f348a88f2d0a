// `tekton-affinity uninstall`: the safe first step of an uninstall. Deleting the Deployment alone would
// strand every run we had gated (PipelineRunPending forever, nobody left to release it). This command
// removes our webhook configurations (no new run is gated, no pod waits on us) and then releases every
// run we gated. Runs the user set Pending themselves stay Pending. Run it, then `kubectl delete -f
// release.yaml` (or `kubectl delete -k deploy/`). Replicas still running only patch the configurations'
// caBundle and never re-create them, so the order is safe without scaling the controller down first.

import type * as k8s from "@kubernetes/client-node";
import type { Command } from "commander";
import {
  GATED_ANNOTATION,
  PENDING_STATUS,
  TEKTON_GROUP,
  TEKTON_VERSION,
  WAITING_ANNOTATION,
} from "../api/constants.js";
import type { PipelineRun } from "../api/types.js";
import { isConflict, isNotFound, loadKubeConfig, makeClients } from "../kube/clients.js";
import { patchRunFenced } from "../kube/fenced.js";
import { CONFIGURATION_NAME } from "../webhooks/configurations.js";

export interface UninstallReport {
  webhookConfigurationsDeleted: string[];
  released: string[];
}

export async function releaseAndUnregister(kc: k8s.KubeConfig): Promise<UninstallReport> {
  const { custom, admission } = makeClients(kc);
  const report: UninstallReport = { webhookConfigurationsDeleted: [], released: [] };
  const ignoreMissing = (err: unknown) => {
    if (!isNotFound(err)) throw err;
  };
  // First stop gating, so no run is gated after we looked.
  await admission
    .deleteMutatingWebhookConfiguration({ name: CONFIGURATION_NAME })
    .then(
      () => report.webhookConfigurationsDeleted.push(`mutatingwebhookconfiguration/${CONFIGURATION_NAME}`),
      ignoreMissing,
    );
  await admission
    .deleteValidatingWebhookConfiguration({ name: CONFIGURATION_NAME })
    .then(
      () => report.webhookConfigurationsDeleted.push(`validatingwebhookconfiguration/${CONFIGURATION_NAME}`),
      ignoreMissing,
    );
  const runs = (await custom.listClusterCustomObject({
    group: TEKTON_GROUP,
    version: TEKTON_VERSION,
    plural: "pipelineruns",
  })) as { items: PipelineRun[] };
  for (const run of runs.items) {
    if (run.metadata.annotations?.[GATED_ANNOTATION] !== "true" || run.spec.status !== PENDING_STATUS)
      continue;
    for (let attempt = 0; ; attempt++) {
      const current =
        attempt === 0
          ? run
          : ((await custom.getNamespacedCustomObject({
              group: TEKTON_GROUP,
              version: TEKTON_VERSION,
              plural: "pipelineruns",
              namespace: run.metadata.namespace,
              name: run.metadata.name,
            })) as PipelineRun);
      if (current.metadata.annotations?.[GATED_ANNOTATION] !== "true") break;
      try {
        await patchRunFenced(custom, current, {
          metadata: { annotations: { [GATED_ANNOTATION]: null, [WAITING_ANNOTATION]: null } },
          spec: { status: null },
        });
        report.released.push(`${run.metadata.namespace}/${run.metadata.name}`);
        break;
      } catch (err) {
        if (isNotFound(err)) break;
        if (!isConflict(err) || attempt >= 5) throw err;
      }
    }
  }
  return report;
}

export function registerUninstallCommand(program: Command): Command {
  return program
    .command("uninstall")
    .description(
      "Remove tekton-affinity's webhook configurations and release every PipelineRun it gated, so an uninstall strands nothing; then run `kubectl delete -f release.yaml`",
    )
    .option("--kubeconfig <path>", "kubeconfig (default: $KUBECONFIG, then in-cluster)")
    .action(async (opts: { kubeconfig?: string }) => {
      const report = await releaseAndUnregister(loadKubeConfig(opts.kubeconfig));
      for (const c of report.webhookConfigurationsDeleted) console.log(`deleted ${c}`);
      for (const r of report.released) console.log(`released pipelinerun ${r}`);
      console.log(
        `${report.released.length} gated run(s) released. Now: kubectl delete -f release.yaml --ignore-not-found (or kubectl delete -k deploy/ --ignore-not-found: the webhook configurations are gone already)`,
      );
    });
}
