// Runs `tekton-affinity controller` as a separate OS process against the local cluster, as an
// operator would run a replica: its own port, its own log file, stoppable and killable.

import { spawn } from "node:child_process";
import { openSync } from "node:fs";
import { request } from "node:https";
import { join, resolve } from "node:path";
import { waitFor } from "../cluster/kube.js";
import { freePort, isAlive, killAllSync, killProcess, stopProcess } from "../cluster/processes.js";

const REPO = resolve(import.meta.dirname, "..", "..");

export interface ControllerProcessOptions {
  kubeconfig: string;
  redisUrl: string;
  logDir: string;
  replicaId?: string;
  /** Extra flags, e.g. ["--settle-seconds", "5"]. */
  args?: string[];
  /** Register the webhook configurations (only one replica should, in the local cluster). */
  manageWebhooks?: boolean;
  port?: number;
  /** host:port the apiserver should call (a balancer in front of several replicas). */
  webhookUrlHost?: string;
  /** Wait for /readyz in start() (default); false: only for the server to listen. */
  waitReady?: boolean;
  /** How to start `tekton-affinity`: node's arguments before `controller` (default: tsx on
   * src/cli/main.ts), and the directory to run in (default: the repository). */
  entry?: { args: string[]; cwd: string };
}

export class ControllerProcess {
  pid = 0;
  port = 0;
  /** Plain-HTTP port of /metrics. */
  metricsPort = 0;
  /** Told to stop (SIGTERM) and not started since: a Service would no longer send it connections. */
  terminating = false;
  readonly log: string;
  /** Kills this process if the test process exits first; dropped once the process is stopped. */
  private onExit?: () => void;

  constructor(private readonly o: ControllerProcessOptions) {
    this.log = join(o.logDir, `controller-${o.replicaId ?? "0"}.log`);
  }

  async start(): Promise<void> {
    this.terminating = false;
    this.port ||= this.o.port ?? (await freePort());
    this.metricsPort ||= await freePort();
    // tsx as a loader inside the one node process, not its CLI: the CLI is a parent process that relays
    // signals and SIGKILLs a child that does not acknowledge a SIGTERM within 30 ms, which on a loaded
    // machine turns a graceful stop into a crash.
    const entry = this.o.entry ?? {
      args: ["--import", "tsx", join(REPO, "src", "cli", "main.ts")],
      cwd: REPO,
    };
    const args = [
      // e.g. CONTROLLER_NODE_ARGS="--cpu-prof --cpu-prof-dir=/tmp/prof" to profile the replicas a test
      // or benchmark starts (node refuses --cpu-prof in NODE_OPTIONS).
      ...(process.env.CONTROLLER_NODE_ARGS?.split(" ").filter(Boolean) ?? []),
      ...entry.args,
      "controller",
      `--kubeconfig=${this.o.kubeconfig}`,
      `--redis-url=${this.o.redisUrl}`,
      `--webhook-port=${this.port}`,
      `--metrics-port=${this.metricsPort}`,
      `--webhook-url-host=${this.o.webhookUrlHost ?? "127.0.0.1"}`,
      `--replica-id=${this.o.replicaId ?? "replica-0"}`,
      "--log-level=debug",
      ...(this.o.manageWebhooks === false
        ? ["--no-manage-webhook-configurations"]
        : ["--create-webhook-configurations"]),
      ...(this.o.args ?? []),
    ];
    const fd = openSync(this.log, "a");
    const child = spawn(process.execPath, args, {
      detached: true,
      stdio: ["ignore", fd, fd],
      cwd: entry.cwd,
    });
    child.unref();
    this.pid = child.pid ?? 0;
    const pid = this.pid;
    // Leave no replica behind if the test process exits or is interrupted.
    this.forgetExitHandler();
    this.onExit = () => killAllSync([pid]);
    process.once("exit", this.onExit);
    if (this.o.waitReady === false) {
      await waitFor(`controller ${this.o.replicaId ?? ""} listening (log: ${this.log})`, () =>
        this.get("/healthz").then(
          () => true,
          () => false,
        ),
      );
      return;
    }
    await waitFor(`controller ${this.o.replicaId ?? ""} /readyz (log: ${this.log})`, () => this.ready(), {
      timeoutMs: 60_000,
    });
  }

  ready(): Promise<boolean> {
    return new Promise((done) => {
      const req = request(
        { host: "127.0.0.1", port: this.port, path: "/readyz", rejectUnauthorized: false, timeout: 1000 },
        (res) => {
          res.resume();
          done(res.statusCode === 200);
        },
      );
      req.on("error", () => done(false));
      req.on("timeout", () => req.destroy());
      req.end();
    });
  }

  /** The replica's /metrics, from its plain-HTTP metrics port. */
  async metrics(): Promise<string> {
    const res = await fetch(`http://127.0.0.1:${this.metricsPort}/metrics`);
    if (!res.ok) throw new Error(`GET /metrics of ${this.o.replicaId ?? "replica-0"}: HTTP ${res.status}`);
    return res.text();
  }

  /** GET a path of the replica's HTTPS server and return the body. */
  get(path: string): Promise<string> {
    return new Promise((done, fail) => {
      const req = request({ host: "127.0.0.1", port: this.port, path, rejectUnauthorized: false }, (res) => {
        let body = "";
        res.on("data", (c) => (body += c));
        res.on("end", () => done(body));
      });
      req.on("error", fail);
      req.end();
    });
  }

  get alive(): boolean {
    return this.pid > 0 && isAlive(this.pid);
  }

  /** As a pod deletion: it leaves the Service's endpoints at once, then gets SIGTERM and drains. */
  async stop(graceMs = 5000): Promise<void> {
    this.terminating = true;
    if (this.alive) await stopProcess(this.pid, graceMs);
    this.forgetExitHandler();
  }

  async kill(): Promise<void> {
    if (this.alive) await killProcess(this.pid);
    this.forgetExitHandler();
  }

  /** One exit listener per live process: restarts would otherwise pile them up past Node's limit. */
  private forgetExitHandler(): void {
    if (this.onExit) process.removeListener("exit", this.onExit);
    this.onExit = undefined;
  }
}
