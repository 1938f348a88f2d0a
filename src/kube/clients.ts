// API clients built once per process from a kubeconfig (flag, $KUBECONFIG, or in-cluster).

import type { Agent } from "node:http";
import * as k8s from "@kubernetes/client-node";

export interface KubeClients {
  kc: k8s.KubeConfig;
  core: k8s.CoreV1Api;
  apps: k8s.AppsV1Api;
  custom: k8s.CustomObjectsApi;
  admission: k8s.AdmissionregistrationV1Api;
  authorization: k8s.AuthorizationV1Api;
  scheduling: k8s.SchedulingV1Api;
}

export function loadKubeConfig(path?: string): k8s.KubeConfig {
  const kc = new k8s.KubeConfig();
  if (path) kc.loadFromFile(path);
  else kc.loadFromDefault();
  reuseConnections(kc);
  return kc;
}

/** How long a kept-alive API connection may idle: under the apiserver's 90 s. */
const IDLE_CONNECTION_MS = 60_000;

type AgentFactory = (cluster: k8s.Cluster | null, options: Record<string, unknown>) => Agent;

/**
 * client-node 1.x builds a new https.Agent for every request, so every API call opened its own TLS
 * connection: a handshake, and the CA, certificate and key parsed again, on both sides. A profile of
 * a replica showed about as much CPU in that as in its reconciles. This makes the KubeConfig hand out one
 * keep-alive agent per set of TLS options instead (a rotated client certificate gets a new agent;
 * a bearer token is a header, not an agent option). Proxied clusters keep client-node's own agents.
 */
export function reuseConnections(kc: k8s.KubeConfig): void {
  // createAgent is private in client-node's typings: the one place every request's agent comes from.
  const target = kc as unknown as { createAgent: AgentFactory };
  const create = target.createAgent.bind(kc);
  const agents = new Map<string, Agent>();
  target.createAgent = (cluster, options) => {
    if (cluster?.proxyUrl) return create(cluster, options);
    const key = agentKey(cluster?.server, options);
    let agent = agents.get(key);
    if (!agent) {
      // `timeout` closes a connection idle that long (a request in flight, a watch included, is not
      // cut): before the apiserver's own 90 s idle close, so a request is never written on a
      // connection the apiserver is closing at that instant.
      agent = create(cluster, {
        ...options,
        keepAlive: true,
        timeout: options.timeout ?? IDLE_CONNECTION_MS,
      });
      agents.set(key, agent);
    }
    return agent;
  };
}

/** What tells two agents apart: the server, and each option as text (Buffers by their bytes). */
function agentKey(server: string | undefined, options: Record<string, unknown>): string {
  const parts = Object.keys(options)
    .sort()
    .map((k) => {
      const v = options[k];
      return `${k}=${Buffer.isBuffer(v) ? v.toString("base64") : String(v)}`;
    });
  return [server ?? "", ...parts].join("\n");
}

export function makeClients(kc: k8s.KubeConfig): KubeClients {
  return {
    kc,
    core: kc.makeApiClient(k8s.CoreV1Api),
    apps: kc.makeApiClient(k8s.AppsV1Api),
    custom: kc.makeApiClient(k8s.CustomObjectsApi),
    admission: kc.makeApiClient(k8s.AdmissionregistrationV1Api),
    authorization: kc.makeApiClient(k8s.AuthorizationV1Api),
    scheduling: kc.makeApiClient(k8s.SchedulingV1Api),
  };
}

/** client-node 1.x picks a patch's content type from a per-request option. */
export const mergePatch = () => k8s.setHeaderOptions("Content-Type", k8s.PatchStrategy.MergePatch);
export const jsonPatch = () => k8s.setHeaderOptions("Content-Type", k8s.PatchStrategy.JsonPatch);

export function statusCode(err: unknown): number | undefined {
  return (err as { code?: number })?.code;
}
export const isNotFound = (err: unknown) => statusCode(err) === 404;

/** The object a read returns, or undefined when it does not exist (404); any other failure is thrown. */
export async function orUndefinedIfNotFound<T>(read: Promise<T>): Promise<T | undefined> {
  try {
    return await read;
  } catch (err) {
    if (isNotFound(err)) return undefined;
    throw err;
  }
}
export const isConflict = (err: unknown) => statusCode(err) === 409;

/** The apiserver's own words for a failed request (its Status message), else the error as text. */
export function apiMessage(err: unknown): string {
  const body = (err as { body?: unknown })?.body;
  if (typeof body === "string") {
    try {
      const message = (JSON.parse(body) as { message?: string }).message;
      if (message) return message;
    } catch {
      // not JSON: fall through
    }
  }
  return err instanceof Error ? err.message : String(err);
}
