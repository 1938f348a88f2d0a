// Zone-level co-scheduling (Tekton issue #3731): with topologyKey topology.kubernetes.io/zone a run's
// tasks share a zone, not a node, so they may spread over the zone's nodes while their zonal volume
// stays reachable. The placeholder mounts the run's claims, so it lands in the volume's zone; with
// nodePinning the tasks are pinned to that zone by its label's value, not to the placeholder's host.

import type { V1Pod } from "@kubernetes/client-node";
import { expect } from "chai";
import { ZONE_LABEL, ZONES } from "../cluster/cluster.js";
import { e2e } from "./env.js";
import {
  applyPolicy,
  createNamespace,
  createRun,
  pipelineRun,
  taskPods,
  waitRunSucceeded,
} from "./helpers.js";

const VOLUME_ZONE = ZONES[1]!;

function requiredZone(pod: V1Pod): string[] | undefined {
  const terms =
    pod.spec?.affinity?.nodeAffinity?.requiredDuringSchedulingIgnoredDuringExecution?.nodeSelectorTerms;
  return terms?.flatMap((t) =>
    (t.matchExpressions ?? []).filter((e) => e.key === ZONE_LABEL).flatMap((e) => e.values ?? []),
  );
}

describe("zones", function () {
  this.timeout(240_000);

  it("topologyKey zone with nodePinning: the run follows its zonal volume and its tasks stay in that zone", async () => {
    const { cluster } = await e2e();
    // Two nodes per zone, so "the same zone" and "the same node" differ.
    const added = await cluster.addNodes(ZONES.length);
    try {
      const ns = await createNamespace(cluster, "zones");
      await applyPolicy(cluster, ns, {
        mode: "pipelineruns",
        strategy: "nodePinning",
        topologyKey: ZONE_LABEL,
      });
      // An Immediate volume that exists only in one zone, bound to the run's claim before the run.
      await cluster.clients.core.createNamespacedPersistentVolumeClaim({
        namespace: ns,
        body: {
          metadata: { name: "data" },
          spec: {
            storageClassName: "standard",
            accessModes: ["ReadWriteOnce"],
            resources: { requests: { storage: "1Gi" } },
            volumeName: `zonal-${ns}`,
          },
        },
      });
      await cluster.createVolume(`zonal-${ns}`, undefined, { namespace: ns, name: "data" }, VOLUME_ZONE);
      const tasks = ["a", "b", "c", "d"].map((name) => ({ name, seconds: 3, workspaces: ["data"] }));
      const run = await createRun(
        cluster,
        pipelineRun(ns, { workspaces: { data: { persistentVolumeClaim: { claimName: "data" } } }, tasks }),
      );
      await waitRunSucceeded(cluster, ns, run.metadata.name, 180_000);

      const zoneOf = new Map(
        (await cluster.listNodes()).map((n) => [n.metadata?.name ?? "", n.metadata?.labels?.[ZONE_LABEL]]),
      );
      // The placeholder is cleaned up with the run; the node it held is recorded on the run.
      const placedOn = (await waitRunSucceeded(cluster, ns, run.metadata.name)).metadata.annotations?.[
        "affinity.tekton.dev/placed-on"
      ];
      expect(zoneOf.get(placedOn ?? ""), "the placeholder followed the volume").to.equal(VOLUME_ZONE);
      const pods = [...(await taskPods(cluster, ns, run.metadata.name)).values()];
      expect(pods).to.have.length(tasks.length);
      for (const pod of pods) {
        expect(
          zoneOf.get(pod.spec?.nodeName ?? ""),
          `${pod.metadata?.name} ran in the volume's zone`,
        ).to.equal(VOLUME_ZONE);
        // Pinned to the zone by its label, not to the placeholder's host (which would be Tekton #3731).
        expect(requiredZone(pod), `${pod.metadata?.name}'s node affinity`).to.deep.equal([VOLUME_ZONE]);
      }
    } finally {
      for (const node of added) await cluster.removeNode(node);
    }
  });
});
