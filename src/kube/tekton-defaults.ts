// Tekton's cluster-wide default for its affinity assistants' pods: the `default-affinity-assistant-pod-
// template` key of the config-defaults ConfigMap. Teams moving from Tekton's assistant keep it: it is
// the lowest layer of a placeholder's pod settings (src/api/placeholder-template.ts says the order).
// Read, not watched, like feature-flags (tekton-flags.ts): one GET per poll, and RBAC for that one
// ConfigMap by name instead of a watch on every ConfigMap of Tekton's namespace.

import type { CoreV1Api, V1ConfigMap } from "@kubernetes/client-node";
import { parse } from "yaml";
import type { TektonDefaultTemplate } from "../api/placeholder-template.js";
import { isNotFound } from "./clients.js";

export const CONFIG_DEFAULTS = "config-defaults";
export const DEFAULT_AA_POD_TEMPLATE_KEY = "default-affinity-assistant-pod-template";

export type DefaultsState =
  | { status: "absent" }
  | { status: "loaded"; template: TektonDefaultTemplate }
  | { status: "invalid"; problem: string };

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v);

/**
 * The fields of Tekton's AffinityAssistantTemplate that a placeholder takes, from the key's YAML.
 * A value of the wrong shape is an error that names the field; fields Tekton has and a placeholder
 * does not use are ignored, as they would be by Tekton's assistant.
 */
export function parseDefaultPodTemplate(text: string | undefined): DefaultsState {
  if (text === undefined || text.trim() === "") return { status: "absent" };
  let doc: unknown;
  try {
    doc = parse(text);
  } catch (err) {
    return { status: "invalid", problem: `it is not valid YAML: ${(err as Error).message.split("\n")[0]}` };
  }
  if (doc === null || doc === undefined) return { status: "absent" };
  if (!isObject(doc)) return { status: "invalid", problem: "it must be a mapping of pod template fields" };
  const template: TektonDefaultTemplate = {};
  const wrong = (field: string, want: string): DefaultsState => ({
    status: "invalid",
    problem: `${field} must be ${want}`,
  });
  const {
    serviceAccountName,
    nodeSelector,
    tolerations,
    priorityClassName,
    securityContext,
    imagePullSecrets,
  } = doc;
  if (serviceAccountName !== undefined) {
    if (typeof serviceAccountName !== "string") return wrong("serviceAccountName", "a string");
    template.serviceAccountName = serviceAccountName;
  }
  if (nodeSelector !== undefined) {
    if (!isObject(nodeSelector) || Object.values(nodeSelector).some((v) => typeof v !== "string"))
      return wrong("nodeSelector", "a map of label names to string values");
    template.nodeSelector = nodeSelector as Record<string, string>;
  }
  if (tolerations !== undefined) {
    if (!Array.isArray(tolerations) || !tolerations.every(isObject))
      return wrong("tolerations", "a list of tolerations");
    template.tolerations = tolerations as TektonDefaultTemplate["tolerations"];
  }
  if (priorityClassName !== undefined) {
    if (typeof priorityClassName !== "string") return wrong("priorityClassName", "a string");
    template.priorityClassName = priorityClassName;
  }
  if (securityContext !== undefined) {
    if (!isObject(securityContext)) return wrong("securityContext", "a pod security context (a mapping)");
    template.securityContext = securityContext;
  }
  if (imagePullSecrets !== undefined) {
    if (
      !Array.isArray(imagePullSecrets) ||
      !imagePullSecrets.every((s) => isObject(s) && typeof s.name === "string")
    )
      return wrong("imagePullSecrets", "a list of {name: <secret>}");
    template.imagePullSecrets = imagePullSecrets as TektonDefaultTemplate["imagePullSecrets"];
  }
  return { status: "loaded", template };
}

/** Reads config-defaults on demand (the controller polls it with feature-flags); keeps the last state. */
export class TektonDefaults {
  private current: DefaultsState = { status: "absent" };
  /** The ConfigMap last read, to point an event at it. */
  configMap?: V1ConfigMap;

  constructor(
    private readonly core: CoreV1Api,
    private readonly namespace: string,
  ) {}

  /** Reads the ConfigMap again; returns the new state. Errors other than 404 are thrown. */
  async refresh(): Promise<DefaultsState> {
    try {
      this.configMap = await this.core.readNamespacedConfigMap({
        name: CONFIG_DEFAULTS,
        namespace: this.namespace,
      });
      this.current = parseDefaultPodTemplate(this.configMap.data?.[DEFAULT_AA_POD_TEMPLATE_KEY]);
    } catch (err) {
      if (!isNotFound(err)) throw err;
      this.configMap = undefined;
      this.current = { status: "absent" };
    }
    return this.current;
  }

  get state(): DefaultsState {
    return this.current;
  }

  /** What placeholders use: the loaded template; nothing while it is absent or invalid. */
  template(): TektonDefaultTemplate | undefined {
    return this.current.status === "loaded" ? this.current.template : undefined;
  }
}
