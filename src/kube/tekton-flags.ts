// Tekton's own affinity assistant must be off, or it would co-schedule our runs too. Whether it is on
// depends on the Tekton release, which reads its feature-flags differently (tektonAssistant says how).
// Read, not watched: reconciles are frequent and the flags are not.

import type { CoreV1Api } from "@kubernetes/client-node";
import { COSCHEDULE_FLAG, DISABLE_FLAG } from "../api/migrate.js";
import { orUndefinedIfNotFound } from "./clients.js";

/** Tekton's own release record in its namespace: data.version, e.g. "v0.68.2". */
export const PIPELINES_INFO = "pipelines-info";

/** Tekton's assistant as its release reads its flags. */
export interface AssistantState {
  /** The coschedule mode its assistant works in, or "disabled" when it is off. */
  mode: string;
  /** What to set in feature-flags to turn it off, for this release. */
  fix: string;
  /** How the flags were read, when that is not plain: the release's rule that decided. */
  note?: string;
}

/** Go's strconv.ParseBool, which Tekton's releases use for boolean flags. */
function parseBool(raw: string | undefined): boolean | undefined {
  const v = raw?.trim();
  if (v === undefined) return undefined;
  if (["1", "t", "T", "true", "TRUE", "True"].includes(v)) return true;
  if (["0", "f", "F", "false", "FALSE", "False"].includes(v)) return false;
  return undefined;
}

/** Whether this release still reads disable-affinity-assistant: v0.68 and older (unknown: no). */
export function readsDisableFlag(version: string | undefined): boolean {
  const m = /^v?(\d+)\.(\d+)/.exec(version?.trim() ?? "");
  return m !== null && Number(m[1]) === 0 && Number(m[2]) <= 68;
}

/**
 * Whether Tekton's assistant is on, read as Tekton `version` reads its feature-flags `data`:
 *  - every release lowercases coschedule (its default is "workspaces");
 *  - v0.68 and older also read disable-affinity-assistant (default "false"), as in Tekton's migration
 *    table: with it "false" only coschedule "workspaces" is valid (any other value is rejected, and the
 *    assistant stays on in workspaces mode); with it "true", coschedule "workspaces" or "disabled" turns
 *    the assistant off, and "pipelineruns" or "isolate-pipelinerun" keep it on in that mode.
 */
export function tektonAssistant(data: Record<string, string | undefined>, version?: string): AssistantState {
  const coschedule = (data[COSCHEDULE_FLAG] ?? "workspaces").trim().toLowerCase() || "workspaces";
  const where = `Tekton ${version ?? "(version unknown)"}`;
  if (!readsDisableFlag(version)) {
    return { mode: coschedule, fix: `set ${COSCHEDULE_FLAG}: "disabled" in feature-flags (${where})` };
  }
  const fix = `set ${DISABLE_FLAG}: "true" and ${COSCHEDULE_FLAG}: "disabled" in feature-flags (${where} reads both)`;
  const disable = parseBool(data[DISABLE_FLAG]) ?? false;
  if (!disable) {
    if (coschedule === "workspaces") return { mode: "workspaces", fix };
    return {
      mode: "workspaces",
      fix,
      note: `${where} rejects ${COSCHEDULE_FLAG}: "${coschedule}" unless ${DISABLE_FLAG} is "true", and keeps its assistant on`,
    };
  }
  if (coschedule === "workspaces" || coschedule === "disabled") return { mode: "disabled", fix };
  return { mode: coschedule, fix };
}

/** Reads Tekton's flags (and its release, once), at most every 10 s. */
export class TektonFlags {
  private value?: { state?: AssistantState; readAt: number };
  private version?: string | null;

  constructor(
    private readonly core: CoreV1Api,
    private readonly namespace: string,
  ) {}

  /** Tekton's assistant mode ("disabled" when off); undefined when its feature-flags ConfigMap does not exist. */
  async coschedule(): Promise<string | undefined> {
    return (await this.state())?.mode;
  }

  /** Tekton's assistant, as its release reads its flags; undefined without a feature-flags ConfigMap. */
  async state(): Promise<AssistantState | undefined> {
    if (this.value && Date.now() - this.value.readAt < 10_000) return this.value.state;
    let state: AssistantState | undefined;
    const data = await this.read("feature-flags");
    if (data) state = tektonAssistant(data, await this.release());
    this.value = { ...(state ? { state } : {}), readAt: Date.now() };
    return state;
  }

  /** Cached answer without I/O (for /readyz and the gate): the conflict message, if Tekton's assistant is on. */
  conflict(): string | undefined {
    const s = this.value?.state;
    return s && s.mode !== "disabled" ? conflictMessage(s, this.namespace) : undefined;
  }

  /** Tekton's release, read once (it changes only with an upgrade, which restarts nothing of ours: a
   * replica restart picks it up). */
  private async release(): Promise<string | undefined> {
    // Not readable (an older install's RBAC): read the flags as current releases do.
    if (this.version === undefined)
      this.version = (await this.read(PIPELINES_INFO).catch(() => undefined))?.version ?? null;
    return this.version ?? undefined;
  }

  private async read(name: string): Promise<Record<string, string> | undefined> {
    const map = await orUndefinedIfNotFound(
      this.core.readNamespacedConfigMap({ name, namespace: this.namespace }),
    );
    return map && (map.data ?? {});
  }
}

export function conflictMessage(state: AssistantState, namespace: string): string {
  return `Tekton's own affinity assistant is on (coschedule mode "${state.mode}", feature-flags in namespace ${namespace}${state.note ? `: ${state.note}` : ""}) and co-schedules these runs too; ${state.fix}. With the Tekton Operator or OpenShift Pipelines, set it in the TektonConfig (spec.pipeline), which resets feature-flags`;
}
