// Starting and stopping the control plane's processes.
//
// Each component runs detached in its own process group, with stdout and stderr in a log file, so that
// `npm run cluster -- up` can return while the cluster keeps running, and `down` (or a test's cleanup)
// can stop the whole group, children included, from any process that has the recorded pid.

import { spawn } from "node:child_process";
import { closeSync, openSync } from "node:fs";
import { createServer } from "node:net";

export interface ComponentRecord {
  name: string;
  pid: number;
  port?: number;
  log: string;
  command: string[];
  env?: Record<string, string>;
}

/** Asks the kernel for a free loopback port. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() => (typeof address === "object" && address ? resolve(address.port) : reject()));
    });
  });
}

export function startProcess(
  name: string,
  command: string[],
  log: string,
  env: Record<string, string> = {},
  port?: number,
): ComponentRecord {
  const fd = openSync(log, "a");
  const [file, ...args] = command;
  const child = spawn(file!, args, {
    detached: true,
    stdio: ["ignore", fd, fd],
    env: { ...process.env, ...env },
  });
  closeSync(fd);
  child.on("error", () => undefined); // reported below, not as an unhandled 'error' event
  child.unref();
  if (child.pid === undefined) {
    const hint =
      file === "redis-server" ? "apt-get install redis-server" : "run the build again (make test builds it)";
    throw new Error(`could not start ${name}: ${file} was not found or is not executable; ${hint}`);
  }
  return { name, pid: child.pid, port, log, command, env };
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function signalGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    try {
      process.kill(pid, signal);
    } catch {
      // already gone
    }
  }
}

/** SIGTERM, then SIGKILL after `graceMs`; resolves once the process is gone. */
export async function stopProcess(pid: number, graceMs = 5000): Promise<void> {
  signalGroup(pid, "SIGTERM");
  const deadline = Date.now() + graceMs;
  while (isAlive(pid) && Date.now() < deadline) await sleep(50);
  if (isAlive(pid)) signalGroup(pid, "SIGKILL");
  while (isAlive(pid)) await sleep(20);
}

/** Kills immediately, as a crash would. */
export async function killProcess(pid: number): Promise<void> {
  signalGroup(pid, "SIGKILL");
  while (isAlive(pid)) await sleep(20);
}

/** Stops processes synchronously: for exit handlers, where nothing async runs any more. */
export function killAllSync(pids: number[]): void {
  for (const pid of pids) signalGroup(pid, "SIGKILL");
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
