// Each replica keeps a Lease saying which webhook trust bundle it has published and which serving
// certificate it serves (as kube-apiserver keeps identity Leases). A CA rotation takes its next step only
// when every live replica has caught up; a Lease not renewed within its duration is a replica that is
// gone, and is ignored (and deleted) so a crashed replica cannot hold a rotation up.

import * as k8s from "@kubernetes/client-node";
import type { ReplicaReport } from "./ca-rotation.js";

export const REPLICA_LEASE_LABEL = "affinity.tekton.dev/webhook-replica";
const TRUSTS_ANNOTATION = "affinity.tekton.dev/trusts";
const SERVES_ANNOTATION = "affinity.tekton.dev/serves";
/** Leases expired for longer than this are deleted by whichever replica lists them. */
const DELETE_EXPIRED_AFTER_MS = 10 * 60 * 1000;

export interface ReplicaLeasesOptions {
  coordination: k8s.CoordinationV1Api;
  namespace: string;
  replicaId: string;
  /** How long a report stays valid without renewal (default: 3 report intervals, set by the caller). */
  leaseDurationSeconds: number;
}

function statusCode(err: unknown): number | undefined {
  return (err as { code?: number } | undefined)?.code;
}

/** A Lease name (a DNS subdomain) for a replica id such as a pod name. */
export function leaseName(replicaId: string): string {
  const safe = replicaId
    .toLowerCase()
    .replace(/[^a-z0-9.-]+/g, "-")
    .replace(/^[^a-z0-9]+|[^a-z0-9]+$/g, "");
  return `tekton-affinity-webhook-${safe || "replica"}`.slice(0, 253);
}

/** Whether a Lease was renewed within its duration at `now`. */
export function leaseIsLive(lease: k8s.V1Lease, now: Date): boolean {
  const renewed = lease.spec?.renewTime ?? lease.spec?.acquireTime;
  if (!renewed) return false;
  const durationMs = (lease.spec?.leaseDurationSeconds ?? 0) * 1000;
  return new Date(renewed).getTime() + durationMs > now.getTime();
}

export class ReplicaLeases {
  private readonly name: string;

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
  async live(now = new Date()): Promise<ReplicaReport[]> {
    const { coordination, namespace } = this.o;
    const list = await coordination.listNamespacedLease({
      namespace,
      labelSelector: `${REPLICA_LEASE_LABEL}=true`,
    });
    const reports: ReplicaReport[] = [];
    for (const lease of list.items) {
      if (leaseIsLive(lease, now)) {
        const a = lease.metadata?.annotations ?? {};
        reports.push({
          id: lease.spec?.holderIdentity ?? lease.metadata?.name ?? "",
          trusts: a[TRUSTS_ANNOTATION] ?? "",
          serves: a[SERVES_ANNOTATION] ?? "",
        });
      } else if (!leaseIsLive(lease, new Date(now.getTime() - DELETE_EXPIRED_AFTER_MS))) {
        await this.delete(lease.metadata?.name ?? "").catch(() => undefined);
      }
    }
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
