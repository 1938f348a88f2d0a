import { expect } from "chai";
import { DEFAULT_TENANCY_LIMITS } from "../../src/api/tenancy.js";
import {
  type ControllerOptions,
  DEFAULTS,
  redactedUrl,
  redisConnection,
} from "../../src/controller/options.js";
import {
  cacheHasSeen,
  eventJobId,
  parseWorkItem,
  type WorkCause,
  type WorkItem,
  workKey,
} from "../../src/queue/work-item.js";
import { redisSettingToCheck } from "../../src/queue/work-queue.js";

describe("work items", () => {
  describe("workKey", () => {
    it("is kind:namespace/name", () => {
      expect(workKey({ kind: "run", namespace: "team-a", name: "build-1" })).to.equal("run:team-a/build-1");
      expect(workKey({ kind: "policy", namespace: "team-a", name: "p" })).to.equal("policy:team-a/p");
    });

    it("differs by kind for the same object name", () => {
      const keys = (["run", "policy"] as const).map((kind) => workKey({ kind, namespace: "a", name: "x" }));
      expect(new Set(keys).size).to.equal(2);
    });
  });

  describe("parseWorkItem", () => {
    it("accepts each valid kind and returns only the known fields", () => {
      const items: WorkItem[] = [
        { kind: "run", namespace: "team-a", name: "build-1" },
        { kind: "policy", namespace: "team-a", name: "p" },
      ];
      for (const item of items) expect(parseWorkItem({ ...item, extra: 1 })).to.deep.equal(item);
    });

    it("round-trips through JSON, as a Redis payload does", () => {
      const item: WorkItem = { kind: "run", namespace: "ns", name: "n" };
      expect(parseWorkItem(JSON.parse(JSON.stringify(item)))).to.deep.equal(item);
    });

    it("keeps the event that caused the work", () => {
      const item: WorkItem = {
        kind: "run",
        namespace: "ns",
        name: "n",
        cause: { kind: "Pod", namespace: "ns", name: "p-0", resourceVersion: "12", deleted: true },
      };
      expect(parseWorkItem(JSON.parse(JSON.stringify(item)))).to.deep.equal(item);
    });

    const badCause = (cause: unknown) => ({ kind: "run", namespace: "a", name: "b", cause });
    const rejected: [string, unknown][] = [
      [
        "a cause of an unknown kind",
        badCause({ kind: "Secret", namespace: "a", name: "s", resourceVersion: "1" }),
      ],
      ["a cause without a resourceVersion", badCause({ kind: "Pod", namespace: "a", name: "p" })],
      ["a cause that is not an object", badCause("Pod/a/p")],
      [
        "a cause with a non-boolean deleted",
        badCause({ kind: "Pod", namespace: "a", name: "p", resourceVersion: "1", deleted: "yes" }),
      ],
      ["null", null],
      ["undefined", undefined],
      ["a string", "run:team-a/build-1"],
      ["a number", 42],
      ["an empty object", {}],
      ["an array", ["run", "team-a", "build-1"]],
      ["an unknown kind", { kind: "pod", namespace: "a", name: "b" }],
      [
        "a node (node events are work for the runs on them, never a job of their own)",
        { kind: "node", namespace: "", name: "b" },
      ],
      ["a kind of the wrong case", { kind: "Run", namespace: "a", name: "b" }],
      ["a non-string kind", { kind: 1, namespace: "a", name: "b" }],
      ["a missing name", { kind: "run", namespace: "a" }],
      ["an empty name", { kind: "run", namespace: "a", name: "" }],
      ["a non-string name", { kind: "run", namespace: "a", name: 7 }],
      ["a missing namespace", { kind: "run", name: "b" }],
      ["a non-string namespace", { kind: "run", namespace: 3, name: "b" }],
      ["a null namespace", { kind: "policy", namespace: null, name: "b" }],
    ];
    for (const [what, data] of rejected) {
      it(`rejects ${what}`, () => {
        expect(parseWorkItem(data)).to.equal(undefined);
      });
    }
  });
});

describe("redisConnection", () => {
  function options(o: Partial<ControllerOptions> = {}): ControllerOptions {
    return {
      redisUrl: DEFAULTS.redisUrl,
      redisTls: false,
      queuePrefix: DEFAULTS.queuePrefix,
      webhookPort: DEFAULTS.webhookPort,
      metricsPort: DEFAULTS.metricsPort,
      namespace: DEFAULTS.namespace,
      serviceName: DEFAULTS.serviceName,
      tektonNamespace: DEFAULTS.tektonNamespace,
      tektonResolversNamespace: DEFAULTS.tektonResolversNamespace,
      concurrency: DEFAULTS.concurrency,
      replicaId: "test",
      logLevel: DEFAULTS.logLevel,
      certificateCheckIntervalMs: DEFAULTS.certificateCheckIntervalMs,
      notReadyGraceSeconds: DEFAULTS.notReadyGraceSeconds,
      settleSeconds: DEFAULTS.settleSeconds,
      resyncSeconds: DEFAULTS.resyncSeconds,
      manageWebhookConfigurations: false,
      createWebhookConfigurations: false,
      tenancy: DEFAULT_TENANCY_LIMITS,
      adminPort: DEFAULTS.adminPort,
      adminHost: DEFAULTS.adminHost,
      ...o,
    };
  }

  it("never shows the URL's password in an error", () => {
    for (const redisUrl of [
      "redis://:hunter2@redis:6379/x", // bad database path
      "http://:hunter2@redis:6379", // wrong scheme
      "redis://:hun ter2@re dis:6379", // not a URL at all
      "redis://user:hunter2@:6379",
    ]) {
      let message = "";
      try {
        redisConnection(options({ redisUrl }));
      } catch (err) {
        message = (err as Error).message;
      }
      expect(message, redisUrl).to.match(/--redis-url/);
      expect(message, redisUrl).to.not.include("hunter2");
    }
    expect(redactedUrl("rediss://app:p@ss@redis:6380/1")).to.equal("rediss://app:***@redis:6380/1");
    expect(redactedUrl("redis://redis:6379")).to.equal("redis://redis:6379");
  });

  it("reads host and port from a redis:// URL", () => {
    expect(redisConnection(options({ redisUrl: "redis://redis.infra.svc:6380" }))).to.deep.equal({
      host: "redis.infra.svc",
      port: 6380,
      username: undefined,
      password: undefined,
      tls: undefined,
      db: undefined,
    });
  });

  it("defaults the port to 6379", () => {
    expect(redisConnection(options({ redisUrl: "redis://redis" }))).to.deep.include({
      host: "redis",
      port: 6379,
    });
    expect(redisConnection(options())).to.deep.include({ host: "127.0.0.1", port: 6379 });
  });

  it("decodes the user and password in the URL", () => {
    const c = redisConnection(options({ redisUrl: "redis://app:p%40ss%3Aw%2Fd@redis:6379" }));
    expect(c.password).to.equal("p@ss:w/d");
    expect(c.username).to.equal("app");
    expect(redisConnection(options({ redisUrl: "redis://:secret@redis" })).password).to.equal("secret");
  });

  it("lets --redis-password override the URL's password", () => {
    const c = redisConnection(options({ redisUrl: "redis://:inurl@redis", redisPassword: "flag" }));
    expect(c.password).to.equal("flag");
    expect(redisConnection(options({ redisPassword: "flag" })).password).to.equal("flag");
  });

  it("enables TLS for rediss:// or --redis-tls", () => {
    expect(redisConnection(options({ redisUrl: "rediss://redis:6380" })).tls).to.deep.equal({});
    expect(redisConnection(options({ redisUrl: "redis://redis", redisTls: true })).tls).to.deep.equal({});
    expect(redisConnection(options({ redisUrl: "redis://redis" })).tls).to.equal(undefined);
  });

  it("reads the database number from the path", () => {
    expect(redisConnection(options({ redisUrl: "redis://redis:6379/3" })).db).to.equal(3);
    expect(redisConnection(options({ redisUrl: "redis://redis:6379/0" })).db).to.equal(0);
    expect(redisConnection(options({ redisUrl: "redis://redis:6379/" })).db).to.equal(undefined);
  });

  it("rejects URLs of other schemes", () => {
    for (const redisUrl of ["http://redis:6379", "https://redis", "tcp://redis:6379"]) {
      expect(() => redisConnection(options({ redisUrl }))).to.throw(/redis:\/\/ or rediss:\/\//);
    }
    expect(() => redisConnection(options({ redisUrl: "http://redis:6379" }))).to.throw(/http:\/\/redis:6379/);
  });

  it("rejects a string that is not a URL", () => {
    for (const redisUrl of ["localhost", "redis-host:6379", "", "//redis:6379"]) {
      expect(() => redisConnection(options({ redisUrl }))).to.throw();
    }
  });

  describe("with sentinels", () => {
    it("parses the list, defaulting the port to 26379 and trimming spaces", () => {
      const c = redisConnection(
        options({
          redisUrl: "redis://:pw@ignored:6379/2",
          redisSentinels: "s1:26380, s2 ,s3:5000",
          redisSentinelName: "mymaster",
        }),
      );
      expect(c).to.deep.equal({
        sentinels: [
          { host: "s1", port: 26380 },
          { host: "s2", port: 26379 },
          { host: "s3", port: 5000 },
        ],
        name: "mymaster",
        password: "pw",
        tls: undefined,
        db: 2,
      });
    });

    it("keeps TLS and the password flag with sentinels", () => {
      const c = redisConnection(
        options({
          redisUrl: "rediss://x",
          redisPassword: "flag",
          redisSentinels: "s1",
          redisSentinelName: "m",
        }),
      );
      expect(c).to.deep.include({ password: "flag", tls: {}, name: "m" });
      expect(c).to.deep.include({ sentinels: [{ host: "s1", port: 26379 }] });
    });

    it("applies TLS to the master and the Sentinels, and passes the Sentinels' own password", () => {
      const c = redisConnection(
        options({
          redisUrl: "redis://x",
          redisTls: true,
          redisSentinels: "s1",
          redisSentinelName: "m",
          redisSentinelPassword: "sentinel-secret",
        }),
      );
      expect(c).to.deep.include({ enableTLSForSentinelMode: true, sentinelTLS: {}, tls: {} });
      expect(c).to.deep.include({ sentinelPassword: "sentinel-secret" });
    });

    it("requires a sentinel name", () => {
      expect(() => redisConnection(options({ redisSentinels: "s1:26379" }))).to.throw(
        /--redis-sentinels needs --redis-sentinel-name/,
      );
      expect(() => redisConnection(options({ redisSentinels: "s1", redisSentinelName: "" }))).to.throw(
        /--redis-sentinel-name/,
      );
    });

    it("still rejects a non-redis URL", () => {
      expect(() =>
        redisConnection(options({ redisUrl: "http://x", redisSentinels: "s1", redisSentinelName: "m" })),
      ).to.throw(/redis:\/\//);
    });
  });
});

describe("redisSettingToCheck", () => {
  it("names the setting behind each kind of Redis failure", () => {
    const e = (message: string, code?: string) => Object.assign(new Error(message), { code });
    expect(
      redisSettingToCheck(e("WRONGPASS invalid username-password pair or user is disabled.")),
    ).to.contain("--redis-password");
    expect(redisSettingToCheck(e("NOAUTH Authentication required."))).to.contain("--redis-password");
    expect(
      redisSettingToCheck(e("self-signed certificate in certificate chain", "SELF_SIGNED_CERT_IN_CHAIN")),
    ).to.contain("--redis-ca-file");
    expect(
      redisSettingToCheck(e("All sentinels are unreachable. Retrying from scratch after 10ms.")),
    ).to.contain("--redis-sentinels");
    expect(redisSettingToCheck(e("connect ECONNREFUSED 127.0.0.1:6390", "ECONNREFUSED"))).to.contain(
      "--redis-url",
    );
  });
});

describe("work caused by a watch event", () => {
  const cause: WorkCause = { kind: "Pod", namespace: "team-a", name: "ph-0", resourceVersion: "1042" };
  const item: WorkItem = { kind: "run", namespace: "team-a", name: "build-1", cause };

  it("is named after the event, the same on every replica, without the ':' BullMQ reserves", () => {
    const id = eventJobId(item)!;
    expect(id).to.equal(eventJobId(structuredClone(item)));
    expect(id).to.not.contain(":");
    expect(id).to.contain("1042");
    expect(Number.isNaN(Number(id)), "not a number: BullMQ's own ids are").to.equal(true);
  });

  it("has a new name for a new version, another object, another target, or the delete", () => {
    const ids = [
      eventJobId(item),
      eventJobId({ ...item, cause: { ...cause, resourceVersion: "1043" } }),
      eventJobId({ ...item, cause: { ...cause, name: "ph-1" } }),
      eventJobId({ ...item, name: "build-2" }),
      eventJobId({ ...item, cause: { ...cause, deleted: true } }),
    ];
    expect(new Set(ids).size).to.equal(ids.length);
  });

  it("has no event name without a cause (resyncs and requeues)", () => {
    expect(eventJobId({ kind: "run", namespace: "a", name: "b" })).to.equal(undefined);
  });

  describe("cacheHasSeen", () => {
    const cases: [string, WorkCause, string | undefined, boolean][] = [
      ["an older version", cause, "1041", false],
      ["the same version", cause, "1042", true],
      [
        "a newer version (compared as numbers, not strings)",
        { ...cause, resourceVersion: "999" },
        "1000",
        true,
      ],
      ["no object, for a change", cause, undefined, false],
      ["no object, for a delete", { ...cause, deleted: true }, undefined, true],
      ["the deleted version still there", { ...cause, deleted: true }, "1042", false],
      ["a recreated object, for a delete", { ...cause, deleted: true }, "1050", true],
      ["an opaque resourceVersion (never waited for)", { ...cause, resourceVersion: "abc" }, "1", true],
    ];
    for (const [what, c, cached, seen] of cases) {
      it(`${seen ? "has" : "has not"} seen it with ${what}`, () => {
        expect(cacheHasSeen(c, cached)).to.equal(seen);
      });
    }

    it("has seen it once the cache as a whole is past it, even with the object gone or older", () => {
      // e.g. a pod changed at 1042 and deleted since: the object is absent, the cache is at 1050.
      expect(cacheHasSeen(cause, undefined, "1050")).to.equal(true);
      expect(cacheHasSeen(cause, "1041", "1042")).to.equal(true);
      // A cache still behind the event waits, object or not.
      expect(cacheHasSeen(cause, undefined, "1041")).to.equal(false);
      expect(cacheHasSeen(cause, "1041", "1041")).to.equal(false);
    });
  });
});
