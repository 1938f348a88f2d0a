// A per-object lock in Redis: the guarantee that one object is worked by one replica at a time.
//
// BullMQ's deduplication (`keepLastIfActive`) already keeps one job per object active in the normal
// case, but that is a property of how jobs are added, not of who runs them: a stalled-job handover, a
// retry racing a new add, or job ids reused after Redis lost its data can each put two jobs for one
// object in two workers. The lock is checked where the work happens, so it holds whatever the queue did.
//
// Semantics: `SET key token NX PX ttl` to take it; a Lua compare-and-pexpire every ttl/3 to keep it
// while the holder runs; a Lua compare-and-delete to give it back, so a holder never frees a lock that
// lapsed and was taken by someone else.
//
// Failure modes:
//  - The holder dies (SIGKILL): the lock expires after `ttlMs`; until then other replicas see it busy
//    and back off. BullMQ's stalled-job check hands the job over on the same time scale.
//  - Redis loses the key (flush, restart without persistence) or the holder stalls past `ttlMs`: the
//    lock is gone while the holder still runs, so a second replica may start. This is the lapsed-lock
//    case: every write the reconcilers make is fenced by resourceVersion, so the late writer gets a
//    409 and retries from fresh state instead of overwriting newer state. `held.lost` reports it.

import { randomBytes } from "node:crypto";
import type { Redis } from "ioredis";

/** Extends the lock only if we still own it. Returns 1 if extended, 0 if not ours any more. */
const EXTEND_IF_OWNER = `
if redis.call("GET", KEYS[1]) == ARGV[1] then
  return redis.call("PEXPIRE", KEYS[1], ARGV[2])
end
return 0`;

/** Deletes the lock only if we still own it. Returns 1 if deleted, 0 if not ours any more. */
const DELETE_IF_OWNER = `
if redis.call("GET", KEYS[1]) == ARGV[1] then
  return redis.call("DEL", KEYS[1])
end
return 0`;

export interface ObjectLockOptions {
  /** Key prefix, one per installation sharing a Redis; the lock key is `<prefix>:lock:<key>`. */
  prefix: string;
  /** How long a lock lives without renewal, i.e. how long a dead holder blocks others. Default 15 s. */
  ttlMs?: number;
}

/** A lock this process holds. Call `release` exactly once, when the work is done. */
export interface HeldLock {
  readonly key: string;
  /** True once a renewal or the release found the lock gone, owned by someone else, or unreachable. */
  readonly lost: boolean;
  release(): Promise<void>;
}

export class ObjectLocks {
  private readonly ttlMs: number;

  constructor(
    private readonly redis: Redis,
    private readonly options: ObjectLockOptions,
  ) {
    this.ttlMs = options.ttlMs ?? 15_000;
  }

  keyFor(objectKey: string): string {
    return `${this.options.prefix}:lock:${objectKey}`;
  }

  /** Takes the lock for `objectKey`, or returns undefined at once if another holder has it. */
  async tryAcquire(objectKey: string): Promise<HeldLock | undefined> {
    const key = this.keyFor(objectKey);
    const token = randomBytes(16).toString("hex");
    const ok = await this.redis.set(key, token, "PX", this.ttlMs, "NX");
    if (ok !== "OK") return undefined;
    return this.hold(key, token);
  }

  private hold(key: string, token: string): HeldLock {
    const redis = this.redis;
    const state = { lost: false, released: false };
    const renew = setInterval(
      () => {
        redis
          .eval(EXTEND_IF_OWNER, 1, key, token, String(this.ttlMs))
          .then((extended) => {
            if (extended !== 1 && !state.released) state.lost = true;
          })
          // Redis unreachable: the key may survive or not; the next renewal tells. Fencing covers both.
          .catch(() => undefined);
      },
      Math.max(100, Math.floor(this.ttlMs / 3)),
    );
    renew.unref();
    return {
      key,
      get lost() {
        return state.lost;
      },
      async release() {
        if (state.released) return;
        state.released = true;
        clearInterval(renew);
        // A release that cannot reach Redis cannot confirm the lock was ours to the end: report it lost.
        const deleted = await redis.eval(DELETE_IF_OWNER, 1, key, token).catch(() => 0);
        if (deleted !== 1) state.lost = true;
      },
    };
  }
}
