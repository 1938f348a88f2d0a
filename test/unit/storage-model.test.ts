// The local cluster's storage model (test/cluster/storage/model.ts): the attach rules and the
// provisioners' choices, without a cluster.

import type { V1Node, V1PersistentVolumeClaim, V1Pod } from "@kubernetes/client-node";
import { expect } from "chai";
import {
  ATTACHED_ANNOTATION,
  decideAttachments,
  decideProvisioning,
  LOCAL_PROVISIONER,
  multiAttachMessage,
  SELECTED_NODE_ANNOTATION,
  ZONAL_PROVISIONER,
  ZONE_LABEL,
} from "../cluster/storage/model.js";

function pod(
  name: string,
  opts: { node?: string; claims?: string[]; attached?: string; phase?: string; at?: number } = {},
): V1Pod {
  return {
    metadata: {
      name,
      namespace: "ns",
      uid: `uid-${name}`,
      creationTimestamp: new Date(opts.at ?? 0),
      annotations: opts.attached ? { [ATTACHED_ANNOTATION]: opts.attached } : {},
    },
    spec: {
      nodeName: opts.node,
      containers: [],
      volumes: (opts.claims ?? []).map((c) => ({ name: c, persistentVolumeClaim: { claimName: c } })),
    },
    status: { phase: opts.phase ?? "Pending" },
  };
}

function claim(name: string, modes = ["ReadWriteOnce"], bound = true): V1PersistentVolumeClaim {
  return {
    metadata: { name, namespace: "ns", uid: `uid-${name}` },
    spec: { accessModes: modes, ...(bound ? { volumeName: `pv-${name}` } : {}) },
    status: { phase: bound ? "Bound" : "Pending" },
  };
}

const claims = (...cs: V1PersistentVolumeClaim[]) => new Map(cs.map((c) => [`ns/${c.metadata!.name}`, c]));
const names = (pods: V1Pod[]) => pods.map((p) => p.metadata!.name);

describe("storage model: attach", () => {
  it("attaches a ReadWriteOnce volume on a second node only after the first pod terminated", () => {
    const running = pod("a", { node: "n1", claims: ["c"], attached: "n1", phase: "Running" });
    const waiting = pod("b", { node: "n2", claims: ["c"] });
    const blocked = decideAttachments([running, waiting], claims(claim("c")));
    expect(names(blocked.attach)).to.deep.equal([]);
    expect(blocked.blocked.map((b) => [b.pod.metadata!.name, b.node, b.holders])).to.deep.equal([
      ["b", "n1", ["a"]],
    ]);
    expect(multiAttachMessage(blocked.blocked[0]!)).to.equal(
      'Multi-Attach error for volume "pv-c" Volume is already used by pod(s) a on node n1',
    );

    const done = { ...running, status: { phase: "Succeeded" } };
    expect(names(decideAttachments([done, waiting], claims(claim("c"))).attach)).to.deep.equal(["b"]);
  });

  it("lets pods on the volume's node share it", () => {
    const a = pod("a", { node: "n1", claims: ["c"], attached: "n1", phase: "Running" });
    const b = pod("b", { node: "n1", claims: ["c"] });
    expect(names(decideAttachments([a, b], claims(claim("c"))).attach)).to.deep.equal(["b"]);
  });

  it("never gives one volume to two nodes in one pass: the older pod wins", () => {
    const young = pod("young", { node: "n2", claims: ["c"], at: 2000 });
    const old = pod("old", { node: "n1", claims: ["c"], at: 1000 });
    const d = decideAttachments([young, old], claims(claim("c")));
    expect(names(d.attach)).to.deep.equal(["old"]);
    expect(names(d.blocked.map((b) => b.pod))).to.deep.equal(["young"]);
  });

  it("a terminating pod still holds its volume until it is gone", () => {
    const leaving = pod("a", { node: "n1", claims: ["c"], attached: "n1", phase: "Running" });
    leaving.metadata!.deletionTimestamp = new Date();
    const d = decideAttachments([leaving, pod("b", { node: "n2", claims: ["c"] })], claims(claim("c")));
    expect(d.blocked).to.have.length(1);
  });

  it("ReadWriteMany volumes attach anywhere; unbound claims and unscheduled pods wait silently", () => {
    const a = pod("a", { node: "n1", claims: ["c"], attached: "n1", phase: "Running" });
    const b = pod("b", { node: "n2", claims: ["c"] });
    expect(names(decideAttachments([a, b], claims(claim("c", ["ReadWriteMany"]))).attach)).to.deep.equal([
      "b",
    ]);
    const unbound = decideAttachments(
      [pod("u", { node: "n1", claims: ["d"] })],
      claims(claim("d", undefined, false)),
    );
    expect(unbound).to.deep.equal({ attach: [], blocked: [] });
    const unscheduled = decideAttachments([pod("p", { claims: ["c"] })], claims(claim("c")));
    expect(unscheduled).to.deep.equal({ attach: [], blocked: [] });
  });
});

describe("storage model: provisioning", () => {
  const nodes = new Map<string, V1Node>([
    ["n1", { metadata: { name: "n1", labels: { [ZONE_LABEL]: "zone-b" } } }],
  ]);
  const pending = (storageClassName: string, selected?: string): V1PersistentVolumeClaim => ({
    metadata: {
      name: "data",
      namespace: "ns",
      uid: "u1",
      annotations: selected ? { [SELECTED_NODE_ANNOTATION]: selected } : {},
    },
    spec: { storageClassName, accessModes: ["ReadWriteOnce"], resources: { requests: { storage: "2Gi" } } },
  });
  const local = { name: "local-wffc", provisioner: LOCAL_PROVISIONER, waitForFirstConsumer: true };
  const zonalWffc = { name: "zonal-wffc", provisioner: ZONAL_PROVISIONER, waitForFirstConsumer: true };
  const zonal = { name: "zonal", provisioner: ZONAL_PROVISIONER, waitForFirstConsumer: false };
  const affinity = (d: ReturnType<typeof decideProvisioning>) =>
    d.type === "provision"
      ? d.volume.spec?.nodeAffinity?.required?.nodeSelectorTerms[0]?.matchExpressions?.[0]
      : undefined;

  it("waits for the first consumer, then makes a volume on its node (local) or in its zone (zonal)", () => {
    expect(decideProvisioning(pending("local-wffc"), local, nodes, "zone-a").type).to.equal("wait");
    const onNode = decideProvisioning(pending("local-wffc", "n1"), local, nodes, "zone-a");
    expect(affinity(onNode)).to.deep.include({ key: "kubernetes.io/hostname", values: ["n1"] });
    if (onNode.type !== "provision") throw new Error("expected a volume");
    expect(onNode.volume.spec?.claimRef).to.include({ namespace: "ns", name: "data", uid: "u1" });
    expect(onNode.volume.spec?.capacity).to.deep.equal({ storage: "2Gi" });
    const inZone = decideProvisioning(pending("zonal-wffc", "n1"), zonalWffc, nodes, "zone-a");
    expect(affinity(inZone)).to.deep.include({ key: ZONE_LABEL, values: ["zone-b"] });
  });

  it("makes an Immediate zonal volume at once, in the class's zone or the next zone", () => {
    expect(affinity(decideProvisioning(pending("zonal"), zonal, nodes, "zone-c"))).to.deep.include({
      values: ["zone-c"],
    });
    const pinned = decideProvisioning(pending("zonal"), { ...zonal, zone: "zone-a" }, nodes, "zone-c");
    expect(affinity(pinned)).to.deep.include({ values: ["zone-a"] });
  });

  it("leaves other classes, bound claims and claims being deleted alone", () => {
    const other = {
      name: "standard",
      provisioner: "kubernetes.io/no-provisioner",
      waitForFirstConsumer: false,
    };
    expect(decideProvisioning(pending("standard"), other, nodes, "zone-a").type).to.equal("ignore");
    const bound = pending("zonal", "n1");
    bound.spec!.volumeName = "pv-x";
    expect(decideProvisioning(bound, zonal, nodes, "zone-a").type).to.equal("ignore");
    expect(decideProvisioning(pending("zonal"), undefined, nodes, "zone-a").type).to.equal("ignore");
  });
});
