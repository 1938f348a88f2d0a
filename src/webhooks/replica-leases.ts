// Each replica keeps a Lease saying which webhook trust bundle it has published and which serving
// certificate it serves (as kube-apiserver keeps identity Leases). A CA rotation takes its next step only
// when every live replica has caught up; a Lease not renewed within its duration is a replica that is
// gone, and is ignored (and deleted) so a crashed replica cannot hold a rotation up.
//
// "Renewed within its duration" is judged by this replica's own clock, never by comparing the renewTime
// another replica wrote (its clock) with ours: as client-go's leader election does, a Lease is live while
// its resourceVersion changed less than a duration ago, as this replica saw it. Clocks minutes apart then
// neither expire a live replica nor keep a dead one.

import * as k8s from "@kubernetes/client-node";
import { REPLICA_LEASE_LABEL, SERVES_ANNOTATION, TRUSTS_ANNOTATION } from "../api/constants.js";
import { statusCode } from "../kube/clients.js";
import type { ReplicaReport } from "./ca-rotation.js";

/** Leases expired for longer than this are deleted by whichever replica lists them. */
const DELETE_EXPIRED_AFTER_MS = 10 * 60 * 1000;

export interface ReplicaLeasesOptions {
  coordination: k8s.CoordinationV1Api;
  namespace: string;
  replicaId: string;
  /** How long a report stays valid without renewal (default: 3 report intervals, set by the caller). */
  leaseDurationSeconds: number;
}

/** A Lease name (a DNS subdomain) for a replica id such as a pod name. */
export function leaseName(replicaId: string): string {
  const safe = replicaId
    .toLowerCase()
    .replace(/[^a-z0-9.-]+/g, "-")
    .replace(/^[^a-z0-9]+|[^a-z0-9]+$/g, "");
  return `tekton-affinity-webhook-${safe || "replica"}`.slice(0, 253);
}

/** When this replica last saw a Lease change (a renewal changes its resourceVersion), by its own clock. */
export interface LeaseSighting {
  version: string;
  seenAtMs: number;
}

/** The sighting after looking at `lease` at `nowMs`: the previous one while the Lease is unchanged. */
export function sight(previous: LeaseSighting | undefined, lease: k8s.V1Lease, nowMs: number): LeaseSighting {
  const version = lease.metadata?.resourceVersion ?? "";
  return previous && previous.version === version ? previous : { version, seenAtMs: nowMs };
}

/** Whether a Lease, last seen changing at `seen`, was renewed within its duration, at `nowMs`. A Lease
 * first seen now counts as live for one duration: a replica that starts cannot tell a dead one yet. */
export function leaseIsLive(lease: k8s.V1Lease, seen: LeaseSighting, nowMs: number): boolean {
  if (!lease.spec?.renewTime && !lease.spec?.acquireTime) return false;
  const durationMs = (lease.spec?.leaseDurationSeconds ?? 0) * 1000;
  return seen.seenAtMs + durationMs > nowMs;
}

export class ReplicaLeases {
  private readonly name: string;
  private readonly sightings = new Map<string, LeaseSighting>();

  constructor(private readonly o: ReplicaLeasesOptions) {
    this.name = leaseName(o.replicaId);
  }

  /** Creates or renews this replica's Lease with what it trusts and serves now. */
  async report(trusts: string, serves: string): Promise<void> {
    const { coordination, namespace } = this.o;
    const now = new Date();
    const desired: k8s.V1Lease = {
      metadata: {
        name: this.name,
        namespace,
        labels: { "app.kubernetes.io/name": "tekton-affinity", [REPLICA_LEASE_LABEL]: "true" },
        annotations: { [TRUSTS_ANNOTATION]: trusts, [SERVES_ANNOTATION]: serves },
      },
      spec: {
        holderIdentity: this.o.replicaId,
        leaseDurationSeconds: this.o.leaseDurationSeconds,
        // A MicroTime: its ISO form carries microseconds, which the apiserver requires.
        renewTime: new k8s.V1MicroTime(now.getTime()),
      },
    };
    let current: k8s.V1Lease | undefined;
    try {
      current = await coordination.readNamespacedLease({ name: this.name, namespace });
    } catch (err) {
      if (statusCode(err) !== 404) throw err;
    }
    if (!current) {
      await coordination.createNamespacedLease({ namespace, body: desired });
      return;
    }
    // Only this replica writes its Lease; a 409 means a restart raced with itself and the next report wins.
    await coordination.replaceNamespacedLease({
      name: this.name,
      namespace,
      body: {
        ...desired,
        metadata: { ...desired.metadata, resourceVersion: current.metadata?.resourceVersion },
      },
    });
  }

  /** The reports of every replica whose Lease is live; long-expired Leases are deleted on the way. */
  async live(nowMs = Date.now()): Promise<ReplicaReport[]> {
    const { coordination, namespace } = this.o;
    const list = await coordination.listNamespacedLease({
      namespace,
      labelSelector: `${REPLICA_LEASE_LABEL}=true`,
    });
    const reports: ReplicaReport[] = [];
    const present = new Set<string>();
    for (const lease of list.items) {
      const name = lease.metadata?.name ?? "";
      present.add(name);
      const seen = sight(this.sightings.get(name), lease, nowMs);
      this.sightings.set(name, seen);
      if (leaseIsLive(lease, seen, nowMs)) {
        const a = lease.metadata?.annotations ?? {};
        reports.push({
          id: lease.spec?.holderIdentity ?? name,
          trusts: a[TRUSTS_ANNOTATION] ?? "",
          serves: a[SERVES_ANNOTATION] ?? "",
        });
      } else if (!leaseIsLive(lease, seen, nowMs - DELETE_EXPIRED_AFTER_MS)) {
        await this.delete(name).catch(() => undefined);
      }
    }
    for (const name of this.sightings.keys()) if (!present.has(name)) this.sightings.delete(name);
    return reports;
  }

  /** On a clean stop: a rotation need not wait for this replica's Lease to expire. */
  async remove(): Promise<void> {
    await this.delete(this.name);
  }

  private async delete(name: string): Promise<void> {
    try {
      await this.o.coordination.deleteNamespacedLease({ name, namespace: this.o.namespace });
    } catch (err) {
      if (statusCode(err) !== 404) throw err;
    }
  }
}
