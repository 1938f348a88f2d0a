// The operator's bounds on what a namespace owner may ask of a placeholder (docs/security.md).
//
// A policy is written by a namespace owner, but some placeholder settings reach beyond the namespace:
// a topologyKey decides how much of the cluster an isolated run claims, a priorityClassName may preempt
// other teams' pods, an image is pulled onto shared nodes, resources take room from everyone. The
// operator bounds them with controller flags; a namespace owner cannot change them.
//
// Enforced twice: the validating webhook rejects a policy outside the bounds (tenancyErrors), and the
// placeholder is built within them whatever the policy says (boundedSpec, boundedTemplate), because a
// policy may predate a tightened flag or have been admitted while the webhook was not installed.

import type { PlaceholderTemplate, Quantity } from "./placeholder-template.js";
import { DEFAULT_PLACEHOLDER_IMAGE } from "./placeholder-template.js";
import type { AffinityPolicy, AffinityPolicySpec } from "./types.js";
import { type FieldError, parseQuantity, validatePolicy } from "./validate.js";

export const HOSTNAME_TOPOLOGY_KEY = "kubernetes.io/hostname";
export const ZONE_TOPOLOGY_KEY = "topology.kubernetes.io/zone";
/** Namespace label an operator sets to put namespaces in one isolation group. */
export const DEFAULT_ISOLATION_GROUP_LABEL = "affinity.tekton.dev/isolation-group";

export interface TenancyLimits {
  /** Node label keys a policy may use as topologyKey. */
  allowedTopologyKeys: readonly string[];
  /** PriorityClasses a placeholder may use; empty: none. */
  allowedPriorityClasses: readonly string[];
  /** Registries (host or host/path prefixes) a placeholder image may come from; empty: any. */
  allowedImageRegistries: readonly string[];
  /** Ceiling per resource name on the placeholder's requests and limits, as Kubernetes quantities. */
  maxPlaceholderResources: Readonly<Record<string, string>>;
  /** Ceiling on what a run's reservation (reserve: LargestTask) may hold, cpu and memory. */
  maxReservationResources: Readonly<Record<string, string>>;
  /** Namespace label whose value names a namespace's isolation group. */
  isolationGroupLabel: string;
  /** maxWait when the policy sets none. */
  defaultMaxWaitMs: number;
  /** The longest maxWait a policy may set. */
  maxWaitCeilingMs: number;
  /** Image of a placeholder whose policy names none, e.g. a mirror of pause on an air-gapped cluster. */
  defaultPlaceholderImage: string;
}

export const DEFAULT_TENANCY_LIMITS: TenancyLimits = Object.freeze({
  allowedTopologyKeys: [HOSTNAME_TOPOLOGY_KEY, ZONE_TOPOLOGY_KEY],
  allowedPriorityClasses: [],
  allowedImageRegistries: [],
  maxPlaceholderResources: { cpu: "1", memory: "1Gi" },
  maxReservationResources: { cpu: "8", memory: "32Gi" },
  isolationGroupLabel: DEFAULT_ISOLATION_GROUP_LABEL,
  defaultMaxWaitMs: 30 * 60_000,
  maxWaitCeilingMs: 24 * 3_600_000,
  defaultPlaceholderImage: DEFAULT_PLACEHOLDER_IMAGE,
});

const DURATION_UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
const DURATION_RE = /^(?:\d+(?:\.\d+)?(?:ms|s|m|h))+$/;

/** Milliseconds of a Go-style duration such as "90s", "15m" or "1h30m"; undefined if it does not parse. */
export function parseDuration(text: string): number | undefined {
  if (!DURATION_RE.test(text)) return undefined;
  let ms = 0;
  for (const m of text.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h)/g)) ms += Number(m[1]) * DURATION_UNIT_MS[m[2]!]!;
  return ms;
}

/** "1h30m", "90s", "250ms": the shortest readable form of a duration. */
export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)}ms`;
  let s = Math.round(ms / 1000);
  const h = Math.floor(s / 3600);
  s -= h * 3600;
  const m = Math.floor(s / 60);
  s -= m * 60;
  return `${h ? `${h}h` : ""}${m ? `${m}m` : ""}${s || (!h && !m) ? `${s}s` : ""}`;
}

/** The run's bound on waiting at the gate: the policy's maxWait within the operator's ceiling. */
export function effectiveMaxWaitMs(spec: AffinityPolicySpec, limits: TenancyLimits): number {
  const asked = spec.maxWait ? parseDuration(spec.maxWait) : undefined;
  // "0s" passes the CRD's pattern; only the webhook rejects it. Treat it as unset, not "fail at once".
  const wanted = asked !== undefined && asked > 0 ? asked : limits.defaultMaxWaitMs;
  return Math.min(wanted, limits.maxWaitCeilingMs);
}

export function imageAllowed(image: string, registries: readonly string[]): boolean {
  if (registries.length === 0) return true;
  return registries.some((r) => image.startsWith(`${r.replace(/\/+$/, "")}/`));
}

function listed(values: readonly string[]): string {
  return values.length ? values.map((v) => `"${v}"`).join(", ") : "(none)";
}

/** What a policy asks that the operator does not allow; each entry names the field, the value and what is allowed. */
export function tenancyErrors(policy: AffinityPolicy, limits: TenancyLimits): FieldError[] {
  const errors: FieldError[] = [];
  const spec = policy.spec;
  if (spec.topologyKey !== undefined && !limits.allowedTopologyKeys.includes(spec.topologyKey)) {
    errors.push({
      field: "spec.topologyKey",
      message: `"${spec.topologyKey}" is not allowed on this cluster; allowed values: ${listed(limits.allowedTopologyKeys)} (the operator sets them with --allowed-topology-keys)`,
    });
  }
  if (spec.maxWait !== undefined) {
    const ms = parseDuration(spec.maxWait);
    if (ms === undefined || ms <= 0) {
      errors.push({
        field: "spec.maxWait",
        message: `"${spec.maxWait}" is not a positive duration; use a number with a unit such as 90s, 15m or 1h30m`,
      });
    } else if (ms > limits.maxWaitCeilingMs) {
      errors.push({
        field: "spec.maxWait",
        message: `"${spec.maxWait}" is above the operator's ceiling of ${formatDuration(limits.maxWaitCeilingMs)}; use at most that (--max-wait-ceiling)`,
      });
    }
  }
  const ph = spec.placeholder;
  if (!ph) return errors;
  if (ph.priorityClassName && !limits.allowedPriorityClasses.includes(ph.priorityClassName)) {
    errors.push({
      field: "spec.placeholder.priorityClassName",
      message: `"${ph.priorityClassName}" is not allowed: a placeholder with it could preempt other teams' pods; allowed values: ${listed(limits.allowedPriorityClasses)} (the operator sets them with --allowed-priority-classes)`,
    });
  }
  if (ph.image?.trim() && !imageAllowed(ph.image, limits.allowedImageRegistries)) {
    errors.push({
      field: "spec.placeholder.image",
      message: `"${ph.image}" is not from an allowed registry; allowed registries: ${listed(limits.allowedImageRegistries)} (the operator sets them with --allowed-image-registries), or remove the field to use ${limits.defaultPlaceholderImage}`,
    });
  }
  for (const kind of ["requests", "limits"] as const) {
    for (const [name, q] of Object.entries(ph.resources?.[kind] ?? {})) {
      const ceiling = limits.maxPlaceholderResources[name];
      if (q === undefined) continue;
      if (ceiling === undefined) {
        errors.push({
          field: `spec.placeholder.resources.${kind}.${name}`,
          message: `${name} has no ceiling for a placeholder (the operator bounds only ${listed(Object.keys(limits.maxPlaceholderResources))} with --max-placeholder-resources), so it is not given to the placeholder; remove it, or ask the operator to set a ceiling for ${name}`,
        });
        continue;
      }
      const value = parseQuantity(q);
      if (value !== undefined && value > parseQuantity(ceiling)!) {
        errors.push({
          field: `spec.placeholder.resources.${kind}.${name}`,
          message: `${q} is above the operator's ceiling of ${ceiling} for a placeholder; use at most ${ceiling} (--max-placeholder-resources)`,
        });
      }
    }
  }
  return errors;
}

/** The spec with a topologyKey the operator allows (the default one otherwise). */
export function boundedSpec(spec: AffinityPolicySpec, limits: TenancyLimits): AffinityPolicySpec {
  if (spec.topologyKey === undefined || limits.allowedTopologyKeys.includes(spec.topologyKey)) return spec;
  return { ...spec, topologyKey: HOSTNAME_TOPOLOGY_KEY };
}

function capResources(resources: Record<string, Quantity>, limits: TenancyLimits): Record<string, Quantity> {
  const out: Record<string, Quantity> = {};
  for (const [name, q] of Object.entries(resources)) {
    const ceiling = limits.maxPlaceholderResources[name];
    // A resource the operator set no ceiling for is unbounded: the placeholder does not get it.
    if (ceiling === undefined) continue;
    const value = parseQuantity(q);
    out[name] = value !== undefined && value > parseQuantity(ceiling)! ? ceiling : q;
  }
  return out;
}

/** The placeholder's pod settings within the operator's bounds, wherever they came from (policy or run). */
export function boundedTemplate(t: PlaceholderTemplate, limits: TenancyLimits): PlaceholderTemplate {
  const out: PlaceholderTemplate = {
    ...t,
    image: imageAllowed(t.image, limits.allowedImageRegistries) ? t.image : limits.defaultPlaceholderImage,
    resources: {
      requests: capResources(t.resources.requests, limits),
      ...(t.resources.limits ? { limits: capResources(t.resources.limits, limits) } : {}),
    },
  };
  if (out.priorityClassName && !limits.allowedPriorityClasses.includes(out.priorityClassName)) {
    delete out.priorityClassName;
  }
  return out;
}

/** A reservation's requests within the operator's ceiling (--max-reservation-resources); `capped` says
 * whether it held less than the run's largest task asked. */
export function capReservation(
  requests: { cpuMillis: number; memoryBytes: number },
  limits: TenancyLimits,
): { requests: { cpuMillis: number; memoryBytes: number }; capped: boolean } {
  const cpu = limits.maxReservationResources.cpu;
  const memory = limits.maxReservationResources.memory;
  const cpuMillis =
    cpu === undefined
      ? requests.cpuMillis
      : Math.min(requests.cpuMillis, Math.round(parseQuantity(cpu)! * 1000));
  const memoryBytes =
    memory === undefined ? requests.memoryBytes : Math.min(requests.memoryBytes, parseQuantity(memory)!);
  return {
    requests: { cpuMillis, memoryBytes },
    capped: cpuMillis < requests.cpuMillis || memoryBytes < requests.memoryBytes,
  };
}

/** Everything wrong with a policy: its own mistakes, and what it asks beyond the operator's bounds. */
export function policyErrors(policy: AffinityPolicy, limits: TenancyLimits): FieldError[] {
  return [...validatePolicy(policy), ...tenancyErrors(policy, limits)];
}
