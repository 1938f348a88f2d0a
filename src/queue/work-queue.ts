// The shared work queue: BullMQ on Redis. Every replica enqueues what its informers see; work caused by
// a watch event is named after it, so the copies from every replica are one job; BullMQ's
// deduplication (`keepLastIfActive`) keeps one object to at most one job active and at most one
// waiting behind it; `replace` lets a new event replace a delayed
// (requeue-after) job so that it is acted on at once. Different objects spread over every replica's
// workers.
//
// Per-object serialization does not rest on that alone: before the handler runs, the worker takes the
// object's lock (object-lock.ts). If another replica holds it (a stalled-job handover, a replaced
// delayed job, a retry racing a new add), the job steps aside into the delayed set for a few hundred
// milliseconds and tries again.
//
// Failure modes (see docs/queue.md):
//  - A replica dies mid-job: BullMQ's stalled-job check hands the job to another replica once its lock
//    (lockDuration) lapses; the object lock lapses on the same time scale. Reconciles are idempotent,
//    so running the rest again is harmless.
//  - A replica is paused longer than lockDuration but is still alive, or Redis loses its keys (flush,
//    restart): the locks are gone while the job still runs, so a second replica may start. Every write
//    is fenced by resourceVersion, so the late writer gets 409 and retries from fresh state instead of
//    overwriting newer state.
//  - Redis is flushed or replaced: the jobs are gone, not the truth. Replicas resync from the cluster.

import { DelayedError, type Job, Queue, Worker } from "bullmq";
import { Redis, type RedisOptions } from "ioredis";
import type { Logger } from "pino";
import { ObjectLocks } from "./object-lock.js";
import { Outages } from "./outages.js";
import { eventJobId, parseWorkItem, type WorkCause, type WorkItem, workKey } from "./work-item.js";

export interface ReconcileResult {
  /** Reconcile again after this long (e.g. still waiting for the scheduler); not an error. */
  requeueAfterMs?: number;
}

export type ReconcileHandler = (
  item: WorkItem,
  ctx: { replica: string; attempt: number },
) => Promise<ReconcileResult>;

export interface WorkQueueOptions {
  connection: RedisOptions;
  /** Key prefix, one per installation sharing a Redis. Default "tekton-affinity". */
  prefix?: string;
  /** Queue name. Default "reconcile". */
  name?: string;
  /** Jobs one replica runs at once. Default 8. */
  concurrency?: number;
  /** Name of this replica, recorded on every job it runs. */
  replica: string;
  /** Attempts before a failing job is dropped (the next resync re-enqueues it). Default 8. */
  attempts?: number;
  /** First retry delay; doubles each attempt, with jitter. Default 250 ms. */
  backoffMs?: number;
  /** How long a job's lock lasts without renewal before another replica may take it. Default 15 s. */
  lockDurationMs?: number;
  logger: Logger;
  onJobDone?: (
    item: WorkItem,
    outcome: "ok" | "requeued" | "error",
    seconds: number,
    attempt: number,
  ) => void;
  onMalformed?: () => void;
  /** Called when a job found its object locked by another worker and stepped aside. */
  onLockBusy?: (item: WorkItem) => void;
  /** Told when the connection to Redis is lost (false) or back (true). */
  onRedisConnected?: (connected: boolean) => void;
}

/** Which setting a Redis error points at, in words an operator can act on. */
export function redisSettingToCheck(err: Error): string {
  const m = `${err.message} ${(err as { code?: string }).code ?? ""}`;
  if (/WRONGPASS|NOAUTH|invalid password|invalid username-password/i.test(m))
    return "the password: --redis-password (REDIS_PASSWORD) or the one in --redis-url";
  if (/certificate|self[- ]signed|SSL|TLS|UNABLE_TO_VERIFY|ERR_TLS|EPROTO|CERT_/i.test(m))
    return "TLS: --redis-ca-file must hold the CA that signed Redis' certificate, and rediss:// or --redis-tls must match Redis' TLS port";
  if (/sentinel/i.test(m))
    return "--redis-sentinels (host:port of reachable Sentinels) and --redis-sentinel-name (the master group)";
  return "--redis-url (host and port of a reachable Redis)";
}

function outcomeOf(result: ReconcileResult): "requeued" | "ok" {
  return result.requeueAfterMs !== undefined ? "requeued" : "ok";
}

/** How long a completed event job stays in Redis: longer than any replica's watch lags behind another's. */
export const EVENT_JOB_RETENTION_S = 60;

/** How long a job whose object is locked waits before it tries again: short, since jobs are short. */
const LOCK_BUSY_DELAY_MS = { min: 100, max: 400 };

export class WorkQueue {
  readonly queue: Queue;
  private worker?: Worker;
  private locks?: ObjectLocks;
  /** The locks' own connection: BullMQ's clients are wrapped in its adapter and not ours to use. */
  private lockRedis?: Redis;
  private readonly opts: Required<
    Omit<WorkQueueOptions, "onJobDone" | "onMalformed" | "onLockBusy" | "onRedisConnected">
  > &
    Pick<WorkQueueOptions, "onJobDone" | "onMalformed" | "onLockBusy" | "onRedisConnected">;

  constructor(options: WorkQueueOptions) {
    this.opts = {
      prefix: "tekton-affinity",
      name: "reconcile",
      concurrency: 8,
      attempts: 8,
      backoffMs: 250,
      lockDurationMs: 15_000,
      ...options,
    };
    this.queue = new Queue(this.opts.name, {
      connection: this.connectionOptions(),
      prefix: this.opts.prefix,
    });
    this.queue.on("error", (err) => this.reportRedisError(err));
  }

  private connectionOptions(): RedisOptions {
    // BullMQ needs maxRetriesPerRequest null: commands wait for Redis to come back instead of failing.
    return { ...this.opts.connection, maxRetriesPerRequest: null, enableOfflineQueue: true };
  }

  private redisDown = false;
  /** When Redis was down, or this replica was not yet up, by its clock: a gated run's maxWait does not
   * count them. The queue is made as the replica starts. */
  readonly outages = new Outages(Date.now());

  /** One line per outage, not one per reconnect attempt; `redisReady` ends the outage. */
  private reportRedisError(err: Error): void {
    if (this.redisDown) return;
    this.redisDown = true;
    this.outages.begin(Date.now());
    this.opts.onRedisConnected?.(false);
    const { host, port } = this.opts.connection;
    this.opts.logger.error(
      { err: err.message, redis: `${host ?? "sentinel"}:${port ?? ""}`, check: redisSettingToCheck(err) },
      "redis unavailable: retrying; webhooks keep serving and queued work resumes when it is back",
    );
  }

  /** Called when the connection is (re)established. */
  redisReady(): void {
    if (!this.redisDown) return;
    this.redisDown = false;
    this.outages.end(Date.now());
    this.opts.onRedisConnected?.(true);
    this.opts.logger.info("redis connection restored");
  }

  /**
   * Adds work for an object. Duplicates collapse; a newer request replaces a delayed one, unless
   * `throttle`: then a delayed job already there stands, so a burst of requests costs one job per delay.
   */
  async enqueue(item: WorkItem, delayMs = 0, { throttle = false } = {}): Promise<void> {
    // Work caused by a watch event is named after it: every replica sees the event and enqueues it,
    // and BullMQ adds a job only for the first (an add whose job id exists is a no-op). The job is kept
    // for EVENT_JOB_RETENTION_S after it completes, so a replica that sees the event late adds nothing.
    const jobId = eventJobId(item);
    // A DELETED event is news even when our write caused it (a run released without co-scheduling
    // loses our label and leaves the cache): its policy's active-run count changes.
    const c = item.cause;
    if (c?.kind === "PipelineRun" && !c.deleted && (await this.isOwnWrite(c))) return;
    await this.queue.add(item.kind, item, {
      delay: delayMs,
      deduplication: { id: workKey(item), keepLastIfActive: true, replace: !throttle },
      attempts: this.opts.attempts,
      backoff: { type: "exponential", delay: this.opts.backoffMs, jitter: 0.5 },
      ...(jobId ? { jobId, removeOnComplete: { age: EVENT_JOB_RETENTION_S } } : { removeOnComplete: true }),
      removeOnFail: true,
    });
  }

  /**
   * Records that this controller itself wrote the object at this version (a run patch), so that the
   * other replicas do not take the watch event of our own write for news. The replica that wrote it
   * knows already (its change filter is told); without this, each of our writes to a run cost one job
   * as soon as a second replica ran. Best effort: a replica that sees the event before the mark is
   * written enqueues it, which costs one harmless job.
   */
  async markOwnWrite(cause: WorkCause): Promise<void> {
    if (!this.lockRedis) return;
    await this.lockRedis
      .set(this.ownWriteKey(cause), "1", "EX", EVENT_JOB_RETENTION_S)
      .catch(() => undefined);
  }

  private async isOwnWrite(cause: WorkCause): Promise<boolean> {
    if (!this.lockRedis) return false;
    return (await this.lockRedis.exists(this.ownWriteKey(cause)).catch(() => 0)) === 1;
  }

  private ownWriteKey(c: WorkCause): string {
    return `${this.opts.prefix}:own:${c.kind}/${c.namespace}/${c.name}@${c.resourceVersion}`;
  }

  start(handler: ReconcileHandler): void {
    this.lockRedis = new Redis(this.connectionOptions());
    this.lockRedis.on("error", (err) => this.reportRedisError(err));
    this.locks = new ObjectLocks(this.lockRedis, {
      prefix: this.opts.prefix,
      ttlMs: this.opts.lockDurationMs,
    });
    this.worker = new Worker(this.opts.name, (job, token) => this.process(job, token, handler), {
      connection: this.connectionOptions(),
      prefix: this.opts.prefix,
      concurrency: this.opts.concurrency,
      lockDuration: this.opts.lockDurationMs,
      stalledInterval: Math.max(1000, this.opts.lockDurationMs / 3),
      maxStalledCount: 5,
    });
    this.worker.on("error", (err) => this.reportRedisError(err));
    this.worker.on("failed", (job, err) => {
      // 409: our cached view was older than the object (Tekton writes runs often). Expected; retried.
      const conflict = (err as { code?: number }).code === 409;
      this.opts.logger[conflict ? "debug" : "warn"](
        { job: job?.name, data: job?.data, attempt: job?.attemptsMade, err: err.message },
        "reconcile failed",
      );
    });
  }

  private async process(
    job: Job,
    token: string | undefined,
    handler: ReconcileHandler,
  ): Promise<ReconcileResult> {
    const item = parseWorkItem(job.data);
    if (!item) {
      // Never crash a worker on garbage: log, count, drop.
      this.opts.logger.error({ jobId: job.id, data: job.data }, "dropping malformed job payload");
      this.opts.onMalformed?.();
      return {};
    }
    const lock = await this.locks!.tryAcquire(workKey(item));
    if (!lock) {
      // Another worker is on this object. Step aside instead of waiting in a worker slot: the job
      // moves to the delayed set (its deduplication key still points at it; a new request replaces it)
      // and runs again shortly, reading whatever state the other worker left.
      this.opts.onLockBusy?.(item);
      const { min, max } = LOCK_BUSY_DELAY_MS;
      await job.moveToDelayed(Date.now() + min + Math.random() * (max - min), token);
      throw new DelayedError();
    }
    const startedAt = Date.now();
    let outcome = "error";
    try {
      const result = await this.runHandler(job, item, handler);
      outcome = outcomeOf(result);
      if (result.requeueAfterMs !== undefined) await this.requeueAfter(item, result.requeueAfterMs);
      return result;
    } finally {
      const endedAt = Date.now();
      await lock.release(); // never throws: an unreachable Redis marks the lock lost
      // One line per job with its interval, written after the release so that `lockLost` is final:
      // the record that shows no object is worked by two replicas at once, or that an overlap came
      // from a lapsed lock (tests read it; operators can too, at debug level).
      const key = workKey(item);
      this.opts.logger.debug({ key, jobId: job.id, startedAt, endedAt, outcome, lockLost: lock.lost }, "job");
      if (lock.lost) {
        this.opts.logger.info(
          { key, jobId: job.id },
          "object lock lapsed while the job ran (Redis lost it or the job outlived it); writes were fenced by resourceVersion",
        );
      }
    }
  }

  /**
   * Requeue-after that outlives this replica. It is added while the job is still active, so BullMQ keeps
   * it as the object's next job (keepLastIfActive) and creates it, delayed, in the same Redis script
   * that finishes this job: no moment exists where the job is done and its requeue only in our memory.
   * A replica that dies first leaves the job stalled, and whoever runs it again requeues again.
   * A request that came in while the handler ran is already the next job and runs at once when this one
   * finishes; a requeue would replace it and postpone it, so none is added then (that job decides anew).
   * An event after the requeue replaces the delayed job with immediate work (`replace`).
   */
  private async requeueAfter(item: WorkItem, delayMs: number): Promise<void> {
    try {
      if (await this.lockRedis!.exists(this.queue.toKey(`dn:${workKey(item)}`))) return;
      // Without the cause: the job being finished carries its event's id, and a requeue under that id
      // would be taken for a copy of it and dropped.
      const { cause: _finished, ...requeue } = item;
      await this.enqueue(requeue, delayMs);
    } catch (err) {
      this.opts.logger.debug({ err: String(err), item }, "requeue failed; the next resync covers it");
    }
  }

  /** Runs the handler and reports its outcome and duration. */
  private async runHandler(job: Job, item: WorkItem, handler: ReconcileHandler): Promise<ReconcileResult> {
    const started = process.hrtime.bigint();
    const seconds = () => Number(process.hrtime.bigint() - started) / 1e9;
    const attempt = job.attemptsMade + 1;
    try {
      const result = await handler(item, { replica: this.opts.replica, attempt });
      this.opts.onJobDone?.(item, outcomeOf(result), seconds(), attempt);
      return result;
    } catch (err) {
      this.opts.onJobDone?.(item, "error", seconds(), attempt);
      throw err;
    }
  }

  /**
   * True when Redis has lost its keys since the last call (FLUSHALL, a restart without persistence, a
   * failover to an empty replica), so the caller can resync at once instead of at the next periodic
   * resync. A marker key is set if absent: "set now" means it was gone. The first call is true too.
   */
  async lostItsKeys(): Promise<boolean> {
    if (!this.lockRedis) return false;
    const set = await this.lockRedis.set(`${this.opts.prefix}:marker`, "1", "NX");
    return set === "OK";
  }

  /**
   * True for the one caller per `ttlMs` that claims `name` across all replicas (SET NX PX). Losing the
   * key (Redis flushed) only means a second claimant: use it for work that is harmless twice.
   */
  async claim(name: string, ttlMs: number): Promise<boolean> {
    if (!this.lockRedis) return true;
    const set = await this.lockRedis.set(
      `${this.opts.prefix}:claim:${name}`,
      this.opts.replica,
      "PX",
      ttlMs,
      "NX",
    );
    return set === "OK";
  }

  async depth(): Promise<Record<string, number>> {
    return this.queue.getJobCounts("waiting", "active", "delayed", "failed", "prioritized");
  }

  async close(): Promise<void> {
    await this.worker?.close();
    await this.queue.close();
    await this.lockRedis?.quit().catch(() => this.lockRedis?.disconnect());
  }
}
