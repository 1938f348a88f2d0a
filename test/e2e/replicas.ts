// Several controller replicas behind one webhook address, as in a real Deployment + Service: the
// balancer's endpoints follow each replica's /readyz, and a refused connection is an error.
// Used by the replicas test and the placement benchmark.

import { readFileSync } from "node:fs";
import type { LocalCluster } from "../cluster/cluster.js";
import { TcpBalancer } from "../cluster/tcp-balancer.js";
import { ControllerProcess } from "./controller-process.js";
import { waitForGate } from "./env.js";

export interface JobRecord {
  replica: string;
  key: string;
  startedAt: number;
  endedAt: number;
  outcome: string;
  /** The job's object lock lapsed while it ran (Redis flushed or restarted, or the job outlived it). */
  lockLost: boolean;
}

export class ReplicaSet {
  readonly replicas: ControllerProcess[] = [];
  /** Logs append across runs against a long-lived cluster; records before this belong to an earlier one. */
  private startedAt = 0;
  /** The Service in front of the replicas: endpoints follow each replica's readiness. */
  readonly balancer = new TcpBalancer(() => this.replicas);

  constructor(
    private readonly cluster: LocalCluster,
    private readonly count: number,
    private readonly args: string[] = [],
    private readonly logDir = `${cluster.state.dir}/logs`,
    private readonly prefix = "replica",
    /** How to start each replica (ControllerProcessOptions.entry): default tsx on the sources. */
    private readonly entry?: { args: string[]; cwd: string },
  ) {}

  async start(): Promise<void> {
    this.startedAt = Date.now();
    const port = await this.balancer.start();
    for (let i = 0; i < this.count; i++) {
      this.replicas.push(
        new ControllerProcess({
          kubeconfig: this.cluster.kubeconfig,
          redisUrl: this.cluster.redisUrl,
          logDir: this.logDir,
          replicaId: `${this.prefix}-${i}`,
          webhookUrlHost: `127.0.0.1:${port}`,
          args: this.args,
          ...(this.entry ? { entry: this.entry } : {}),
        }),
      );
    }
    // One after another: each registers the same webhook configuration (same URL, same CA).
    for (const r of this.replicas) await r.start();
    // The balancer probes every 500 ms: without a fresh probe, an admission right now could find no
    // endpoint yet and be reset, as a Service would before its endpoints catch up.
    await this.balancer.probe();
    await waitForGate(this.cluster);
  }

  async stop(): Promise<void> {
    await Promise.all(this.replicas.map((r) => r.stop()));
    await this.balancer.stop();
  }

  /** Every job interval each replica logged since start() (the "job" debug line of src/queue/work-queue.ts). */
  jobRecords(): JobRecord[] {
    const records: JobRecord[] = [];
    for (const r of this.replicas) {
      for (const line of readFileSync(r.log, "utf8").split("\n")) {
        if (!line.includes('"msg":"job"')) continue;
        try {
          const j = JSON.parse(line) as JobRecord & { replica: string };
          if (j.startedAt < this.startedAt) continue;
          records.push({
            replica: j.replica,
            key: j.key,
            startedAt: j.startedAt,
            endedAt: j.endedAt,
            outcome: j.outcome,
            lockLost: j.lockLost === true,
          });
        } catch {
          // a line cut by SIGKILL
        }
      }
    }
    return records;
  }
}

/** Pairs of job intervals for one key that overlap in time (same replica or not). */
export function concurrentWork(records: JobRecord[]): [JobRecord, JobRecord][] {
  const byKey = new Map<string, JobRecord[]>();
  for (const r of records) byKey.set(r.key, [...(byKey.get(r.key) ?? []), r]);
  const overlaps: [JobRecord, JobRecord][] = [];
  for (const list of byKey.values()) {
    list.sort((a, b) => a.startedAt - b.startedAt);
    for (let i = 0; i < list.length; i++) {
      for (let j = i + 1; j < list.length && list[j]!.startedAt < list[i]!.endedAt; j++) {
        overlaps.push([list[i]!, list[j]!]);
      }
    }
  }
  return overlaps;
}
