// Semantic checks of an AffinityPolicy that the CRD's OpenAPI schema and CEL rules cannot express.
// Used by the validating webhook and the policy reconciler. Each problem names the field path and
// says how to fix it.

import { parseQuantity as parseExactQuantity } from "./quantity.js";
import type { AffinityPolicy, LabelSelector, Toleration } from "./types.js";

export interface FieldError {
  field: string;
  message: string;
}

const DNS1123_LABEL = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";
const DNS1123_SUBDOMAIN_RE = new RegExp(`^${DNS1123_LABEL}(\\.${DNS1123_LABEL})*$`);
const QUALIFIED_NAME_RE = /^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/;
const LABEL_VALUE_RE = QUALIFIED_NAME_RE;
/** Why `key` is not a valid label key, or undefined if it is. */
export function labelKeyProblem(key: string): string | undefined {
  if (key === "") return "must not be empty";
  const slash = key.indexOf("/");
  const prefix = slash >= 0 ? key.slice(0, slash) : undefined;
  const name = slash >= 0 ? key.slice(slash + 1) : key;
  if (prefix !== undefined) {
    if (prefix === "") return "has an empty prefix before '/'";
    if (prefix.length > 253) return "has a prefix longer than 253 characters";
    if (!DNS1123_SUBDOMAIN_RE.test(prefix)) {
      return `has prefix "${prefix}", which is not a DNS subdomain (lowercase letters, digits, '-' and '.', e.g. example.com)`;
    }
  }
  if (name === "") return "has an empty name";
  if (name.length > 63) return "has a name part longer than 63 characters";
  if (!QUALIFIED_NAME_RE.test(name)) {
    return `has name "${name}", which must start and end with a letter or digit and contain only letters, digits, '-', '_' and '.'`;
  }
  return undefined;
}

/** Why `value` is not a valid label value, or undefined if it is. */
export function labelValueProblem(value: string): string | undefined {
  if (value === "") return undefined;
  if (value.length > 63) return "is longer than 63 characters";
  if (!LABEL_VALUE_RE.test(value)) {
    return "must be empty or start and end with a letter or digit and contain only letters, digits, '-', '_' and '.'";
  }
  return undefined;
}

function dnsSubdomainProblem(name: string): string | undefined {
  if (name.length > 253) return "is longer than 253 characters";
  if (!DNS1123_SUBDOMAIN_RE.test(name)) {
    return "must consist of lowercase letters, digits, '-' and '.', and start and end with a letter or digit (e.g. my-name)";
  }
  return undefined;
}

/** The value of a Kubernetes quantity, or undefined when it does not parse (quantity.ts parses it). */
export function parseQuantity(q: number | string): number | undefined {
  try {
    return parseExactQuantity(q);
  } catch {
    return undefined;
  }
}

function checkLabelKey(errors: FieldError[], field: string, key: string, what: string): void {
  const problem = labelKeyProblem(key);
  if (problem) {
    errors.push({
      field,
      message: `${what} "${key}" ${problem}; use an optional DNS-subdomain prefix and '/' followed by a name of at most 63 characters, e.g. example.com/team`,
    });
  }
}

function checkLabelValue(errors: FieldError[], field: string, value: string, what: string): void {
  const problem = labelValueProblem(value);
  if (problem) {
    errors.push({
      field,
      message: `${what} "${value}" ${problem}; use at most 63 characters such as my-value_1.0`,
    });
  }
}

function checkName(errors: FieldError[], field: string, name: string | undefined, what: string): void {
  if (name === undefined) return;
  if (name === "") {
    errors.push({ field, message: `${what} is empty; set a name or remove the field` });
    return;
  }
  const problem = dnsSubdomainProblem(name);
  if (problem) errors.push({ field, message: `${what} "${name}" ${problem}` });
}

function validateSelector(errors: FieldError[], selector: LabelSelector | undefined, path: string): void {
  if (!selector) return;
  for (const [key, value] of Object.entries(selector.matchLabels ?? {})) {
    const field = `${path}.matchLabels["${key}"]`;
    checkLabelKey(errors, field, key, "label key");
    if (value !== undefined) checkLabelValue(errors, field, value, "label value");
  }
  (selector.matchExpressions ?? []).forEach((req, i) => {
    const field = `${path}.matchExpressions[${i}]`;
    checkLabelKey(errors, `${field}.key`, req.key, "label key");
    const values = req.values ?? [];
    if ((req.operator === "In" || req.operator === "NotIn") && values.length === 0) {
      errors.push({
        field: `${field}.values`,
        message: `operator ${req.operator} needs at least one value; list the label values to match, or use operator ${req.operator === "In" ? "Exists" : "DoesNotExist"} to match on the key alone`,
      });
    }
    if ((req.operator === "Exists" || req.operator === "DoesNotExist") && values.length > 0) {
      errors.push({
        field: `${field}.values`,
        message: `operator ${req.operator} takes no values; remove values, or use operator ${req.operator === "Exists" ? "In" : "NotIn"} to match specific values`,
      });
    }
    values.forEach((v, j) => {
      checkLabelValue(errors, `${field}.values[${j}]`, v, "label value");
    });
  });
}

function validateToleration(errors: FieldError[], t: Toleration, path: string): void {
  const operator = t.operator ?? "Equal";
  if (t.key) checkLabelKey(errors, `${path}.key`, t.key, "toleration key");
  if (!t.key && operator !== "Exists") {
    errors.push({
      field: `${path}.operator`,
      message:
        "a toleration without a key must use operator Exists (it then tolerates every taint); set key or operator: Exists",
    });
  }
  if (operator === "Exists" && t.value) {
    errors.push({
      field: `${path}.value`,
      message: `operator Exists matches any value, so value "${t.value}" must be removed; or use operator Equal to match that value`,
    });
  }
  if (operator === "Equal" && t.value) checkLabelValue(errors, `${path}.value`, t.value, "toleration value");
  const effect = t.effect ?? "";
  if (!["", "NoSchedule", "PreferNoSchedule", "NoExecute"].includes(effect)) {
    errors.push({
      field: `${path}.effect`,
      message: `effect "${effect}" is not a taint effect; use NoSchedule, PreferNoSchedule, NoExecute, or leave it empty to match all effects`,
    });
  }
  if (t.tolerationSeconds !== undefined && t.tolerationSeconds !== null && effect !== "NoExecute") {
    errors.push({
      field: `${path}.tolerationSeconds`,
      message:
        "tolerationSeconds only applies to effect NoExecute; set effect: NoExecute or remove tolerationSeconds",
    });
  }
}

function validateResources(
  errors: FieldError[],
  resources: {
    requests?: Record<string, number | string | undefined>;
    limits?: Record<string, number | string | undefined>;
  },
  path: string,
): void {
  const parsed: Record<"requests" | "limits", Record<string, number>> = { requests: {}, limits: {} };
  for (const kind of ["requests", "limits"] as const) {
    for (const [name, q] of Object.entries(resources[kind] ?? {})) {
      if (q === undefined) continue;
      const field = `${path}.${kind}.${name}`;
      const value = parseQuantity(q);
      if (value === undefined) {
        errors.push({
          field,
          message: `"${q}" is not a Kubernetes quantity; use a number with an optional suffix such as 100m, 0.5 or 1Gi`,
        });
      } else if (value < 0) {
        errors.push({ field, message: `"${q}" is negative; resource quantities must be zero or more` });
      } else {
        parsed[kind][name] = value;
      }
    }
  }
  for (const [name, request] of Object.entries(parsed.requests)) {
    const limit = parsed.limits[name];
    if (limit !== undefined && request > limit) {
      errors.push({
        field: `${path}.requests.${name}`,
        message: `request ${resources.requests?.[name]} is above limit ${resources.limits?.[name]}; lower the request or raise ${path}.limits.${name}`,
      });
    }
  }
}

export function validatePolicy(policy: AffinityPolicy): FieldError[] {
  const errors: FieldError[] = [];
  const spec = policy.spec;
  validateSelector(errors, spec.pipelineRunSelector, "spec.pipelineRunSelector");
  if (spec.topologyKey !== undefined) {
    checkLabelKey(errors, "spec.topologyKey", spec.topologyKey, "topologyKey");
  }
  const ph = spec.placeholder;
  if (!ph) return errors;
  checkName(errors, "spec.placeholder.serviceAccountName", ph.serviceAccountName, "serviceAccountName");
  checkName(errors, "spec.placeholder.priorityClassName", ph.priorityClassName, "priorityClassName");
  (ph.imagePullSecrets ?? []).forEach((s, i) => {
    const field = `spec.placeholder.imagePullSecrets[${i}].name`;
    if (!s.name)
      errors.push({ field, message: "imagePullSecrets entry has no name; set the name of a Secret" });
    else checkName(errors, field, s.name, "Secret name");
  });
  for (const [key, value] of Object.entries(ph.nodeSelector ?? {})) {
    const field = `spec.placeholder.nodeSelector["${key}"]`;
    checkLabelKey(errors, field, key, "node label key");
    if (value !== undefined) checkLabelValue(errors, field, value, "node label value");
  }
  (ph.tolerations ?? []).forEach((t, i) => {
    validateToleration(errors, t, `spec.placeholder.tolerations[${i}]`);
  });
  if (ph.resources) validateResources(errors, ph.resources, "spec.placeholder.resources");
  if (ph.image !== undefined && ph.image.trim() === "") {
    errors.push({
      field: "spec.placeholder.image",
      message:
        "image is empty; set an image reference such as registry.k8s.io/pause:3.10, or remove the field to use that default",
    });
  } else if (ph.image !== undefined && /\s/.test(ph.image)) {
    errors.push({
      field: "spec.placeholder.image",
      message: `image "${ph.image}" contains whitespace; use a plain image reference such as registry.k8s.io/pause:3.10`,
    });
  }
  return errors;
}
