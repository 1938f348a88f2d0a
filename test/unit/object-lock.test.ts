// The per-object lock and the work queue's use of it, against a real redis-server on a free port (no
// Kubernetes needed: this is the queue's own contract).

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Queue } from "bullmq";
import { expect } from "chai";
import { Redis } from "ioredis";
import pino from "pino";
import { ObjectLocks } from "../../src/queue/object-lock.js";
import { type WorkItem, workKey } from "../../src/queue/work-item.js";
import { WorkQueue } from "../../src/queue/work-queue.js";
import { freePort, sleep, startProcess, stopProcess } from "../cluster/processes.js";

async function startRedis(): Promise<{ port: number; stop: () => Promise<void> }> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), "object-lock-"));
  const record = startProcess(
    "redis",
    ["redis-server", "--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
    join(dir, "redis.log"),
  );
  const deadline = Date.now() + 10_000;
  for (;;) {
    // A fresh client per attempt: one that failed keeps its own reconnect loop going.
    const probe = new Redis({ port, lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0 });
    probe.on("error", () => undefined);
    try {
      await probe.connect();
      await probe.ping();
      break;
    } catch (err) {
      if (Date.now() > deadline) throw new Error(`redis-server did not start on ${port}: ${err}`);
      await sleep(50);
    } finally {
      probe.disconnect();
    }
  }
  return {
    port,
    stop: async () => {
      await stopProcess(record.pid);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

describe("object locks (real redis-server)", function () {
  this.timeout(30_000);
  let redis: { port: number; stop: () => Promise<void> };
  let client: Redis;

  before(async () => {
    redis = await startRedis();
    client = new Redis({ port: redis.port });
  });
  after(async () => {
    client?.disconnect();
    await redis?.stop();
  });
  beforeEach(() => client.flushall());

  it("lets one holder in at a time, and the next in after release", async () => {
    const locks = new ObjectLocks(client, { prefix: "t" });
    const first = await locks.tryAcquire("run:a/x");
    expect(first, "first acquire").to.not.equal(undefined);
    expect(await locks.tryAcquire("run:a/x"), "second acquire while held").to.equal(undefined);
    expect(await locks.tryAcquire("run:a/y"), "another object is independent").to.not.equal(undefined);
    await first!.release();
    expect(first!.lost).to.equal(false);
    expect(await locks.tryAcquire("run:a/x"), "acquire after release").to.not.equal(undefined);
  });

  it("keeps the prefix per installation", async () => {
    const a = new ObjectLocks(client, { prefix: "install-a" });
    const b = new ObjectLocks(client, { prefix: "install-b" });
    expect(await a.tryAcquire("run:ns/x")).to.not.equal(undefined);
    expect(await b.tryAcquire("run:ns/x")).to.not.equal(undefined);
    expect(await client.exists("install-a:lock:run:ns/x")).to.equal(1);
  });

  it("expires when the holder stops renewing (a dead replica blocks others for ttl only)", async () => {
    // A holder that died: the key exists with a TTL and nobody renews it.
    await client.set("t:lock:run:a/x", "dead-replica", "PX", 300);
    const locks = new ObjectLocks(client, { prefix: "t", ttlMs: 300 });
    expect(await locks.tryAcquire("run:a/x")).to.equal(undefined);
    await sleep(400);
    expect(await locks.tryAcquire("run:a/x")).to.not.equal(undefined);
  });

  it("is renewed while held, beyond its ttl", async () => {
    const locks = new ObjectLocks(client, { prefix: "t", ttlMs: 300 });
    const held = await locks.tryAcquire("run:a/x");
    await sleep(1000);
    expect(await locks.tryAcquire("run:a/x"), "still held after 3 ttls").to.equal(undefined);
    expect(held!.lost).to.equal(false);
    await held!.release();
  });

  it("never releases a lock another holder took after it lapsed, and reports the loss", async () => {
    const locks = new ObjectLocks(client, { prefix: "t", ttlMs: 300 });
    const held = await locks.tryAcquire("run:a/x");
    // Redis lost the key (flush) and another replica took it.
    await client.flushall();
    const other = await locks.tryAcquire("run:a/x");
    expect(other).to.not.equal(undefined);
    await sleep(250); // a renewal runs and finds the lock not ours
    expect(held!.lost).to.equal(true);
    await held!.release();
    expect(await client.exists("t:lock:run:a/x"), "the other holder's lock survives").to.equal(1);
    await other!.release();
    expect(await client.exists("t:lock:run:a/x")).to.equal(0);
  });

  describe("in the work queue", () => {
    const queues: WorkQueue[] = [];
    afterEach(async () => {
      for (const q of queues.splice(0)) await q.close();
    });

    it("never runs two jobs for one object at once, even when the queue holds two", async () => {
      const item: WorkItem = { kind: "run", namespace: "ns", name: "busy" };
      const intervals: { replica: string; start: number; end: number }[] = [];
      let busy = 0;
      const replica = (name: string) => {
        const q = new WorkQueue({
          connection: { host: "127.0.0.1", port: redis.port },
          prefix: "lockq",
          replica: name,
          logger: pino({ level: "silent" }),
          onLockBusy: () => busy++,
        });
        queues.push(q);
        q.start(async () => {
          const start = Date.now();
          await sleep(300);
          intervals.push({ replica: name, start, end: Date.now() });
          return {};
        });
      };
      replica("r1");
      replica("r2");
      // Two jobs for one object, bypassing deduplication: what a stalled handover or ids reused after
      // a flush can leave behind. Without the lock both would run at once on the two replicas.
      const raw = new Queue("reconcile", { connection: { port: redis.port }, prefix: "lockq" });
      try {
        await raw.addBulk([
          { name: "run", data: item, opts: { removeOnComplete: true } },
          { name: "run", data: item, opts: { removeOnComplete: true } },
        ]);
        const deadline = Date.now() + 15_000;
        while (intervals.length < 2 && Date.now() < deadline) await sleep(50);
      } finally {
        await raw.close();
      }
      expect(intervals, `both jobs for ${workKey(item)} ran`).to.have.length(2);
      const [a, b] = intervals.sort((x, y) => x.start - y.start);
      expect(b!.start, JSON.stringify(intervals)).to.be.at.least(a!.end);
      expect(busy, "the second job stepped aside at least once").to.be.at.least(1);
    });

    /** A replica of the queue whose handler is `handler`. */
    const replica = (
      name: string,
      prefix: string,
      handler: (item: WorkItem) => Promise<{ requeueAfterMs?: number }>,
    ) => {
      const q = new WorkQueue({
        connection: { host: "127.0.0.1", port: redis.port },
        prefix,
        replica: name,
        logger: pino({ level: "silent" }),
      });
      queues.push(q);
      q.start(handler);
      return q;
    };
    const until = async (what: string, ok: () => boolean, ms = 10_000) => {
      const deadline = Date.now() + ms;
      while (!ok()) {
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
        await sleep(20);
      }
    };

    it("a requeue-after outlives the replica that asked for it", async () => {
      const item: WorkItem = { kind: "run", namespace: "ns", name: "waiting" };
      const runs: { replica: string; at: number }[] = [];
      const a = replica("a", "requeue1", async () => {
        runs.push({ replica: "a", at: Date.now() });
        return { requeueAfterMs: 1000 };
      });
      await a.enqueue(item);
      await until("the first job", () => runs.length === 1);
      await sleep(100); // the job has finished: its requeue is in Redis, not in replica a
      await a.close();
      queues.splice(queues.indexOf(a), 1);
      replica("b", "requeue1", async () => {
        runs.push({ replica: "b", at: Date.now() });
        return {};
      });
      await until("the requeued job on replica b", () => runs.length === 2);
      expect(runs[1]!.replica).to.equal("b");
      expect(runs[1]!.at - runs[0]!.at, "not before its delay").to.be.at.least(900);
    });

    it("an event that comes in while the job runs is not postponed by the job's requeue-after", async () => {
      const item: WorkItem = { kind: "run", namespace: "ns", name: "event" };
      const runs: number[] = [];
      const q = replica("a", "requeue2", async () => {
        runs.push(Date.now());
        if (runs.length === 1) {
          await q.enqueue(item); // e.g. the placeholder got scheduled while we looked
          await sleep(200);
        }
        return { requeueAfterMs: 10_000 };
      });
      await q.enqueue(item);
      await until("the event's job", () => runs.length === 2, 5000);
      expect(runs[1]! - runs[0]!, "at once, not after 10 s").to.be.below(2000);
    });

    // One watch event, seen by three replicas, is one job: before, early and late copies.
    it("runs one job for one event however many replicas enqueue it, and one per new event", async () => {
      const cause = { kind: "Pod" as const, namespace: "ns", name: "ph-0", resourceVersion: "41" };
      const item: WorkItem = { kind: "run", namespace: "ns", name: "evented", cause };
      const runs: string[] = [];
      const handler = async (i: WorkItem) => {
        runs.push(i.cause?.resourceVersion ?? "none");
        await sleep(150);
        return {};
      };
      const [a, b, c] = ["a", "b", "c"].map((n) => replica(n, "events", handler));
      await Promise.all([a!.enqueue(item), b!.enqueue(item)]);
      await until("the event's job", () => runs.length === 1);
      await c!.enqueue(item); // while it runs
      await sleep(400);
      await c!.enqueue(item); // after it finished: a replica whose watch lagged
      await sleep(400);
      expect(runs, "one job for event 41").to.deep.equal(["41"]);

      await b!.enqueue({ ...item, cause: { ...cause, resourceVersion: "42" } });
      await until("the next event's job", () => runs.length === 2);
      await sleep(300);
      expect(runs).to.deep.equal(["41", "42"]);
    });

    it("adds no job for the watch event of a run write the controller made itself", async () => {
      const runs: string[] = [];
      const [writer, other] = ["a", "b"].map((n) =>
        replica(n, "own", async (i) => {
          runs.push(i.cause?.resourceVersion ?? "none");
          return {};
        }),
      );
      const ours = { kind: "PipelineRun" as const, namespace: "ns", name: "r", resourceVersion: "90" };
      await writer!.markOwnWrite(ours);
      await other!.enqueue({ kind: "run", namespace: "ns", name: "r", cause: ours });
      await other!.enqueue({
        kind: "run",
        namespace: "ns",
        name: "r",
        cause: { ...ours, resourceVersion: "91" },
      });
      await until("the job of the write that was not ours", () => runs.length === 1);
      // Our write took the run out of the (label-selected) cache: its DELETED event is still news.
      await other!.enqueue({ kind: "policy", namespace: "ns", name: "p", cause: { ...ours, deleted: true } });
      await until("the job of the delete our write caused", () => runs.length === 2);
      await sleep(300);
      expect(runs).to.deep.equal(["91", "90"]);
    });

    it("still requeues after a job that an event caused", async () => {
      const cause = { kind: "PipelineRun" as const, namespace: "ns", name: "w", resourceVersion: "7" };
      const runs: number[] = [];
      const q = replica("a", "events2", async () => {
        runs.push(Date.now());
        return runs.length === 1 ? { requeueAfterMs: 200 } : {};
      });
      await q.enqueue({ kind: "run", namespace: "ns", name: "w", cause });
      await until("the requeued job", () => runs.length === 2, 5000);
      expect(runs[1]! - runs[0]!).to.be.at.least(150);
    });
  });
});
