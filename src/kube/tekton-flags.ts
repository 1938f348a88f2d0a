// Tekton's own affinity assistant must be off (feature-flags coschedule: "disabled"), or it would
// co-schedule our runs too. Read, not watched: reconciles are frequent and the flag is not.

import type { CoreV1Api } from "@kubernetes/client-node";
import { isNotFound } from "./clients.js";

/** Reads Tekton's coschedule flag, at most every 10 s. */
export class TektonFlags {
  private value?: { coschedule?: string; readAt: number };

  constructor(
    private readonly core: CoreV1Api,
    private readonly namespace: string,
  ) {}

  /** Tekton's coschedule mode; undefined when its feature-flags ConfigMap does not exist. */
  async coschedule(): Promise<string | undefined> {
    if (this.value && Date.now() - this.value.readAt < 10_000) return this.value.coschedule;
    let coschedule: string | undefined;
    try {
      const cm = await this.core.readNamespacedConfigMap({
        name: "feature-flags",
        namespace: this.namespace,
      });
      coschedule = cm.data?.coschedule ?? "workspaces"; // Tekton's default when the key is absent
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
    this.value = { coschedule, readAt: Date.now() };
    return coschedule;
  }

  /** Cached answer without I/O (for /readyz): the conflict message, if Tekton's assistant is on. */
  conflict(): string | undefined {
    const c = this.value?.coschedule;
    return c && c !== "disabled" ? conflictMessage(c, this.namespace) : undefined;
  }
}

export function conflictMessage(coschedule: string, namespace: string): string {
  return `Tekton's own affinity assistant is on (feature-flags coschedule: "${coschedule}" in namespace ${namespace}) and co-schedules these runs too; set coschedule: "disabled" there`;
}
