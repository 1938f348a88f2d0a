// Teams moving from Tekton's assistant keep their cluster-wide default pod template: Tekton's
// config-defaults `default-affinity-assistant-pod-template` is the lowest layer of placeholder
// settings. A broken one is ignored, and says so on the ConfigMap.

import { expect } from "chai";
import { waitFor } from "../cluster/kube.js";
import { TEKTON_NAMESPACE } from "../cluster/tekton.js";
import { e2e } from "./env.js";
import { applyPolicy, createNamespace, createRun, getRun, metricSum, pipelineRun } from "./helpers.js";

const KEY = "default-affinity-assistant-pod-template";
const LABEL = "tekton-default-pool";

describe("Tekton's config-defaults pod template", function () {
  this.timeout(180_000);

  it("places placeholders by it, reports a broken one on the ConfigMap, and ignores it", async () => {
    const { cluster, controller } = await e2e();
    const core = cluster.clients.core;
    const setKey = (value: string | null) =>
      cluster.kubectlRun(
        "patch",
        "configmap",
        "config-defaults",
        "-n",
        TEKTON_NAMESPACE,
        "--type=merge",
        "-p",
        JSON.stringify({ data: { [KEY]: value } }),
      );
    const templateState = async (status: string) =>
      metricSum(
        await controller.metrics(),
        "tekton_affinity_tekton_default_pod_template",
        `status="${status}"`,
      ) === 1;
    const node = (await cluster.listNodes()).find((n) => !n.spec?.unschedulable)!.metadata!.name!;
    try {
      // Broken first: ignored, with a Warning event on the ConfigMap that says what is wrong.
      await setKey("nodeSelector: [not, a, map]");
      await waitFor("the controller to find the template invalid", () => templateState("invalid"), {
        timeoutMs: 30_000,
      });
      const event = await waitFor(
        "an InvalidAffinityAssistantPodTemplate event on config-defaults",
        async () => {
          const events = await core.listNamespacedEvent({
            namespace: TEKTON_NAMESPACE,
            fieldSelector: "involvedObject.kind=ConfigMap,involvedObject.name=config-defaults",
          });
          return events.items.find((e) => e.reason === "InvalidAffinityAssistantPodTemplate");
        },
      );
      expect(event.type).to.equal("Warning");
      expect(event.message).to.contain("nodeSelector must be a map");

      // A valid one: every placeholder of a policy that sets no nodeSelector lands on the one node
      // with the label (spreading alone would put two runs on two nodes).
      await cluster.kubectlRun("label", "node", node, `${LABEL}=ci`, "--overwrite");
      await setKey(`nodeSelector:\n  ${LABEL}: ci\n`);
      await waitFor("the controller to load the template", () => templateState("loaded"), {
        timeoutMs: 30_000,
      });
      const ns = await createNamespace(cluster, "tekton-defaults");
      await applyPolicy(cluster, ns, { mode: "pipelineruns" });
      const runs = await Promise.all(
        [1, 2].map(() => createRun(cluster, pipelineRun(ns, { tasks: [{ name: "t", seconds: 5 }] }))),
      );
      for (const run of runs) {
        const placedOn = await waitFor(`${run.metadata.name} placed`, async () => {
          const r = await getRun(cluster, ns, run.metadata.name);
          return r.metadata.annotations?.["affinity.tekton.dev/placed-on"];
        });
        expect(placedOn).to.equal(node);
      }
    } finally {
      await setKey(null);
      await cluster.kubectlRun("label", "node", node, `${LABEL}-`).catch(() => undefined);
      await waitFor("the controller to see the template gone", () => templateState("absent"), {
        timeoutMs: 30_000,
      });
    }
  });
});
