// Maps Tekton's affinity-assistant feature flags (ConfigMap tekton-pipelines/feature-flags) to the
// equivalent AffinityPolicy mode, following Tekton's migration table:
//
// | disable-affinity-assistant | coschedule          | during migration (both set) | after migration (only coschedule) |
// |----------------------------|---------------------|-----------------------------|-----------------------------------|
// | false (default)            | disabled            | N/A: invalid                | disabled                          |
// | false (default)            | workspaces (default)| workspaces                  | workspaces                        |
// | false (default)            | pipelineruns        | N/A: invalid                | pipelineruns                      |
// | false (default)            | isolate-pipelinerun | N/A: invalid                | isolate-pipelinerun               |
// | true                       | disabled            | disabled                    | disabled                          |
// | true                       | workspaces (default)| disabled                    | workspaces                        |
// | true                       | pipelineruns        | pipelineruns                | pipelineruns                      |
// | true                       | isolate-pipelinerun | isolate-pipelinerun         | isolate-pipelinerun               |
//
// Neither flag set: workspaces (Tekton's default). Only disable-affinity-assistant set: coschedule takes
// its default (workspaces) and the "during migration" column applies, as it did in Tekton releases
// that still read that flag.

import { stringify } from "yaml";
import { API_VERSION, KIND } from "./constants.js";
import { type AffinityPolicy, MODES, type Mode } from "./types.js";

export const DISABLE_FLAG = "disable-affinity-assistant";
export const COSCHEDULE_FLAG = "coschedule";

export type MigrationResult = { ok: true; mode: Mode; explanation: string } | { ok: false; error: string };

/** The spellings Go's strconv.ParseBool (which Tekton uses for boolean flags) accepts. */
const TRUE_VALUES = ["true", "True", "TRUE", "t", "T", "1"];
const FALSE_VALUES = ["false", "False", "FALSE", "f", "F", "0"];

function parseDisableFlag(raw: string): boolean | undefined {
  const v = raw.trim();
  if (TRUE_VALUES.includes(v)) return true;
  if (FALSE_VALUES.includes(v)) return false;
  return undefined;
}

export function migrateFeatureFlags(data: Record<string, string | undefined>): MigrationResult {
  const rawDisable = data[DISABLE_FLAG];
  const rawCoschedule = data[COSCHEDULE_FLAG];
  const errors: string[] = [];

  let disable: boolean | undefined;
  if (rawDisable !== undefined) {
    disable = parseDisableFlag(rawDisable);
    if (disable === undefined) {
      errors.push(
        `${DISABLE_FLAG}: "${rawDisable}" is not a boolean; accepted values are "true" or "false" (Tekton also accepts t/f/1/0/TRUE/FALSE)`,
      );
    }
  }
  let coschedule: Mode | undefined;
  if (rawCoschedule !== undefined) {
    const v = rawCoschedule.trim() as Mode;
    if (MODES.includes(v)) coschedule = v;
    else {
      errors.push(
        `${COSCHEDULE_FLAG}: "${rawCoschedule}" is not a coschedule mode; accepted values are ${MODES.map((m) => `"${m}"`).join(", ")}`,
      );
    }
  }
  if (errors.length > 0) return { ok: false, error: errors.join("\n") };

  if (rawDisable === undefined && rawCoschedule === undefined) {
    return {
      ok: true,
      mode: "workspaces",
      explanation: `neither ${DISABLE_FLAG} nor ${COSCHEDULE_FLAG} is set, so Tekton uses its default: coschedule workspaces`,
    };
  }
  if (rawDisable === undefined) {
    const mode = coschedule!;
    return {
      ok: true,
      mode,
      explanation: `only ${COSCHEDULE_FLAG} is set (after migration): ${COSCHEDULE_FLAG}: ${mode} means mode ${mode}`,
    };
  }

  const co: Mode = coschedule ?? "workspaces";
  const combo = `${DISABLE_FLAG}: "${disable}" with ${COSCHEDULE_FLAG}: "${co}"${coschedule ? "" : " (default)"}`;
  if (!disable) {
    if (co === "workspaces") {
      return {
        ok: true,
        mode: "workspaces",
        explanation: `${combo} (during migration) means coschedule workspaces`,
      };
    }
    return {
      ok: false,
      error:
        `${combo} is invalid during migration: with both flags present, ${COSCHEDULE_FLAG} may only differ from "workspaces" ` +
        `when ${DISABLE_FLAG} is "true". Set ${DISABLE_FLAG}: "true" to get mode ${co}, or remove ${DISABLE_FLAG} ` +
        `(it was removed after Tekton v0.68) so that ${COSCHEDULE_FLAG} alone decides`,
    };
  }
  if (co === "workspaces") {
    return {
      ok: true,
      mode: "disabled",
      explanation: `${combo} (during migration) means the affinity assistant is disabled; after migration (without ${DISABLE_FLAG}) the same ${COSCHEDULE_FLAG} would mean workspaces`,
    };
  }
  return {
    ok: true,
    mode: co,
    explanation: `${combo} (during migration) means mode ${co}`,
  };
}

export interface RenderOptions {
  /** Emit one AffinityPolicy named `default` per namespace; without any, a cluster-default snippet. */
  namespaces?: string[];
  /** Printed as a comment at the top, e.g. a MigrationResult's explanation. */
  explanation?: string;
}

function commentLines(text: string): string {
  return text
    .split("\n")
    .map((l) => `# ${l}`.trimEnd())
    .join("\n");
}

export function policyFor(mode: Mode, namespace: string): AffinityPolicy {
  return {
    apiVersion: API_VERSION as AffinityPolicy["apiVersion"],
    kind: KIND as AffinityPolicy["kind"],
    metadata: { name: "default", namespace },
    spec: { mode },
  };
}

export function renderPolicyYaml(mode: Mode, options: RenderOptions = {}): string {
  const header: string[] = [];
  if (options.explanation) header.push(commentLines(`Tekton feature flags: ${options.explanation}.`));
  header.push(
    commentLines(
      `Equivalent tekton-affinity configuration: mode ${mode}.\n` +
        `Turn Tekton's own affinity assistant off (feature-flags ${COSCHEDULE_FLAG}: "disabled") once this is applied,\n` +
        "or both will try to co-schedule the same runs.",
    ),
  );
  const namespaces = options.namespaces ?? [];
  if (namespaces.length === 0) {
    header.push(
      commentLines(
        "No --namespace given: Tekton's flags apply to every namespace, which is a cluster default here.\n" +
          `Start the controller with \`--default-mode ${mode}\` (container args below), or rerun with\n` +
          "--namespace <ns...> to get one AffinityPolicy per namespace instead.",
      ),
    );
    return `${header.join("\n")}\n${stringify({ args: ["--default-mode", mode] })}`;
  }
  const docs = namespaces.map((ns) => stringify(policyFor(mode, ns)).trimEnd());
  return `${header.join("\n")}\n${docs.map((d) => `---\n${d}`).join("\n")}\n`;
}
