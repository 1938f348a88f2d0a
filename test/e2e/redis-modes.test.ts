// Redis for real (issue 13), each a local redis-server started by the test: a replica works its queue
// against a password-protected Redis and a TLS Redis (certificates made here); a wrong password or a
// CA that did not sign Redis' certificate is one clear error line naming the setting, and the
// replica's webhooks keep serving. With Sentinel, a failover while runs are created loses no run.

import { execFile } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { expect } from "chai";
import { Redis, type RedisOptions } from "ioredis";
import { waitFor } from "../cluster/kube.js";
import { freePort, startProcess, stopProcess } from "../cluster/processes.js";
import { ControllerProcess } from "./controller-process.js";
import { e2e, TEST_CONTROLLER_ARGS, waitForGate } from "./env.js";
import {
  applyPolicy,
  createNamespace,
  createRun,
  metricSum,
  pipelineRun,
  uniqueName,
  waitRunSucceeded,
} from "./helpers.js";

const run = promisify(execFile);

function errorLines(log: string): string[] {
  return readFileSync(log, "utf8")
    .split("\n")
    .filter((l) => l.includes('"level":50'));
}

interface LocalRedis {
  port: number;
  pid: number;
}

async function startRedis(dir: string, args: string[], ping: () => Promise<unknown>, port: number) {
  mkdirSync(dir, { recursive: true });
  const record = startProcess(
    "redis",
    ["redis-server", "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir, ...args],
    join(dir, "redis.log"),
  );
  await waitFor(
    `redis on ${port}`,
    async () =>
      ping().then(
        () => true,
        () => false,
      ),
    { timeoutMs: 20_000 },
  );
  return { port, pid: record.pid } as LocalRedis;
}

async function ping(options: RedisOptions): Promise<void> {
  const client = new Redis({
    ...options,
    lazyConnect: true,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
  });
  client.on("error", () => undefined);
  try {
    await client.connect();
    await client.ping();
  } finally {
    client.disconnect();
  }
}

/** A CA and a server certificate for 127.0.0.1, made with openssl. */
async function makeCertificates(
  dir: string,
  name: string,
): Promise<{ ca: string; cert: string; key: string }> {
  mkdirSync(dir, { recursive: true });
  const p = (f: string) => join(dir, `${name}-${f}`);
  await run("openssl", [
    "req",
    "-x509",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-days",
    "1",
    "-subj",
    `/CN=${name}-ca`,
    "-keyout",
    p("ca.key"),
    "-out",
    p("ca.crt"),
  ]);
  await run("openssl", [
    "req",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-subj",
    "/CN=127.0.0.1",
    "-keyout",
    p("server.key"),
    "-out",
    p("server.csr"),
  ]);
  const ext = p("ext.cnf");
  await run("sh", ["-c", `printf 'subjectAltName=IP:127.0.0.1\\n' > '${ext}'`]);
  await run("openssl", [
    "x509",
    "-req",
    "-in",
    p("server.csr"),
    "-CA",
    p("ca.crt"),
    "-CAkey",
    p("ca.key"),
    "-CAcreateserial",
    "-days",
    "1",
    "-extfile",
    ext,
    "-out",
    p("server.crt"),
  ]);
  return { ca: p("ca.crt"), cert: p("server.crt"), key: p("server.key") };
}

describe("Redis for real: password and TLS", function () {
  this.timeout(240_000);
  const redises: LocalRedis[] = [];
  const replicas: ControllerProcess[] = [];

  afterEach(async () => {
    for (const r of replicas.splice(0)) await r.stop();
    for (const r of redises.splice(0)) await stopProcess(r.pid, 2000);
  });

  /** A replica on `redisUrl` with extra flags, not registered with the apiserver. */
  async function replica(name: string, redisUrl: string, args: string[]): Promise<ControllerProcess> {
    const { cluster, logDir } = await e2e();
    const r = new ControllerProcess({
      kubeconfig: cluster.kubeconfig,
      redisUrl,
      logDir,
      replicaId: uniqueName(name),
      manageWebhooks: false,
      args: [...TEST_CONTROLLER_ARGS, ...args],
    });
    replicas.push(r);
    await r.start(); // resolves on /readyz: the webhooks serve whatever Redis does
    return r;
  }

  /** The replica works jobs from its own queue: a managed run's events reach it through its informers. */
  async function expectWorksItsQueue(r: ControllerProcess): Promise<void> {
    const { cluster } = await e2e();
    const ns = await createNamespace(cluster, "redis-mode");
    await applyPolicy(cluster, ns, { mode: "pipelineruns" });
    const created = await createRun(cluster, pipelineRun(ns, { tasks: [{ name: "a" }] }));
    await waitFor(
      "the replica to work run jobs from its Redis",
      async () =>
        metricSum(await r.metrics(), "tekton_affinity_job_duration_seconds_count", 'kind="run"') > 0,
    );
    await waitRunSucceeded(cluster, ns, created.metadata.name);
  }

  async function expectOneClearError(r: ControllerProcess, setting: string): Promise<void> {
    await waitFor("the Redis error line", async () => errorLines(r.log).length > 0);
    await new Promise((resolve) => setTimeout(resolve, 3000)); // several reconnect attempts
    const errors = errorLines(r.log);
    expect(errors, errors.join("\n")).to.have.length(1);
    expect(errors[0]).to.contain("redis unavailable");
    expect(errors[0]).to.contain(setting);
    expect(r.alive).to.equal(true);
    expect(await r.ready()).to.equal(true);
    expect(metricSum(await r.metrics(), "tekton_affinity_job_duration_seconds_count", 'kind="run"')).to.equal(
      0,
    );
  }

  it("a password-protected Redis: the right password works the queue, a wrong one is one clear line", async () => {
    const { cluster } = await e2e();
    const port = await freePort();
    const password = "s3cret-redis";
    redises.push(
      await startRedis(
        join(cluster.state.dir, `redis-auth-${port}`),
        ["--port", String(port), "--requirepass", password],
        () => ping({ port, host: "127.0.0.1", password }),
        port,
      ),
    );
    const good = await replica("redis-auth", `redis://127.0.0.1:${port}`, [`--redis-password=${password}`]);
    await expectWorksItsQueue(good);
    const keys = new Redis({ port, host: "127.0.0.1", password });
    try {
      expect((await keys.keys("tekton-affinity:*")).length).to.be.above(0);
    } finally {
      keys.disconnect();
    }
    const bad = await replica("redis-badpass", `redis://127.0.0.1:${port}`, ["--redis-password=wrong"]);
    await expectOneClearError(bad, "--redis-password");
  });

  it("a TLS Redis: the CA that signed it works the queue, another CA is one clear line", async () => {
    const { cluster } = await e2e();
    const dir = join(cluster.state.dir, `redis-tls-${Date.now()}`);
    const good = await makeCertificates(dir, "good");
    const other = await makeCertificates(dir, "other");
    const port = await freePort();
    redises.push(
      await startRedis(
        dir,
        [
          "--port",
          "0",
          "--tls-port",
          String(port),
          "--tls-cert-file",
          good.cert,
          "--tls-key-file",
          good.key,
          "--tls-ca-cert-file",
          good.ca,
          "--tls-auth-clients",
          "no",
        ],
        () => ping({ port, host: "127.0.0.1", tls: { ca: readFileSync(good.ca, "utf8") } }),
        port,
      ),
    );
    const trusted = await replica("redis-tls", `rediss://127.0.0.1:${port}`, [`--redis-ca-file=${good.ca}`]);
    await expectWorksItsQueue(trusted);
    const untrusted = await replica("redis-tls-badca", `rediss://127.0.0.1:${port}`, [
      `--redis-ca-file=${other.ca}`,
    ]);
    await expectOneClearError(untrusted, "--redis-ca-file");
  });
});

describe("Redis for real: Sentinel failover", function () {
  this.timeout(300_000);

  it("one master, one replica, three sentinels: a failover while runs are created loses no run", async () => {
    const env = await e2e();
    const { cluster, logDir } = env;
    const dir = join(cluster.state.dir, `sentinel-${Date.now()}`);
    mkdirSync(dir, { recursive: true });
    const started: number[] = [];
    const [master, replicaPort] = [await freePort(), await freePort()];
    const base = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"];
    started.push(
      startProcess(
        "redis-master",
        ["redis-server", "--port", String(master), ...base, "--dir", dir],
        join(dir, "master.log"),
      ).pid,
      startProcess(
        "redis-replica",
        [
          "redis-server",
          "--port",
          String(replicaPort),
          ...base,
          "--dir",
          dir,
          "--replicaof",
          "127.0.0.1",
          String(master),
        ],
        join(dir, "replica.log"),
      ).pid,
    );
    const sentinels: number[] = [];
    for (let i = 0; i < 3; i++) {
      const port = await freePort();
      const conf = join(dir, `sentinel-${i}.conf`);
      writeFileSync(
        conf,
        [
          `port ${port}`,
          "bind 127.0.0.1",
          `sentinel monitor mymaster 127.0.0.1 ${master} 2`,
          "sentinel down-after-milliseconds mymaster 1000",
          "sentinel failover-timeout mymaster 5000",
          "",
        ].join("\n"),
      );
      started.push(
        startProcess(`sentinel-${i}`, ["redis-server", conf, "--sentinel"], join(dir, `sentinel-${i}.log`))
          .pid,
      );
      sentinels.push(port);
    }
    const sentinel = new Redis({ host: "127.0.0.1", port: sentinels[0]!, lazyConnect: true });
    sentinel.on("error", () => undefined);
    const masterNow = async () =>
      ((await sentinel.call("SENTINEL", "get-master-addr-by-name", "mymaster")) as string[] | null)?.[1];
    // The controller under test takes the shared replica's place (same port, so the apiserver's webhook
    // configuration stays valid): every run below is gated, placed and cleaned up by it alone.
    await env.controller.stop();
    const underTest = new ControllerProcess({
      kubeconfig: cluster.kubeconfig,
      redisUrl: "redis://mymaster",
      logDir,
      replicaId: "sentinel",
      port: env.controller.port,
      args: [
        ...TEST_CONTROLLER_ARGS,
        `--redis-sentinels=${sentinels.map((p) => `127.0.0.1:${p}`).join(",")}`,
        "--redis-sentinel-name=mymaster",
      ],
    });
    try {
      await sentinel.connect();
      await waitFor("sentinels to see the replica", async () => {
        const replicas = (await sentinel.call("SENTINEL", "replicas", "mymaster")) as unknown[];
        return replicas.length === 1;
      });
      await underTest.start();
      await waitForGate(cluster);
      const ns = await createNamespace(cluster, "sentinel");
      await applyPolicy(cluster, ns, { mode: "pipelineruns" });
      const names: string[] = [];
      for (let i = 0; i < 16; i++) {
        const created = await createRun(
          cluster,
          pipelineRun(ns, { tasks: [{ name: "a" }, { name: "b", runAfter: ["a"] }] }),
        );
        names.push(created.metadata.name);
        if (i === 7) await stopProcess(started[0]!, 0); // the master dies mid-stream (SIGKILL)
        await new Promise((r) => setTimeout(r, 500));
      }
      await waitFor("the sentinels to fail over", async () => (await masterNow()) === String(replicaPort), {
        timeoutMs: 60_000,
      });
      for (const name of names) await waitRunSucceeded(cluster, ns, name, 180_000);
      // The controller worked through the failover: it ran jobs from the new master.
      const promoted = new Redis({ host: "127.0.0.1", port: replicaPort });
      try {
        expect((await promoted.keys("tekton-affinity:*")).length).to.be.above(0);
      } finally {
        promoted.disconnect();
      }
      expect(underTest.alive).to.equal(true);
    } finally {
      sentinel.disconnect();
      await underTest.stop();
      for (const pid of started) await stopProcess(pid, 2000);
      await env.controller.start();
      await waitForGate(cluster);
    }
  });
});
