// Events that explain themselves in `kubectl describe`. Repeats of one (object, reason, message) are
// folded into one Event with a count, like client-go's recorder, so a waiting run does not spam.

import { createHash } from "node:crypto";
import type { CoreV1Api } from "@kubernetes/client-node";
import type { Logger } from "pino";
import { isConflict, mergePatch } from "./clients.js";

export interface EventTarget {
  apiVersion: string;
  kind: string;
  name: string;
  namespace: string;
  uid?: string;
}

export class EventRecorder {
  constructor(
    private readonly core: CoreV1Api,
    private readonly component: string,
    private readonly logger: Logger,
  ) {}

  async record(
    target: EventTarget,
    type: "Normal" | "Warning",
    reason: string,
    message: string,
  ): Promise<void> {
    const hash = createHash("sha256").update(`${target.uid}/${reason}/${message}`).digest("hex").slice(0, 12);
    const name = `${target.name}.${hash}`;
    const now = new Date();
    try {
      await this.core.createNamespacedEvent({
        namespace: target.namespace,
        body: {
          metadata: { name, namespace: target.namespace },
          involvedObject: { ...target },
          type,
          reason,
          message,
          count: 1,
          firstTimestamp: now,
          lastTimestamp: now,
          source: { component: this.component },
          reportingComponent: this.component,
        },
      });
    } catch (err) {
      if (!isConflict(err)) {
        this.logger.warn({ err: String(err), reason }, "could not record event");
        return;
      }
      try {
        const existing = await this.core.readNamespacedEvent({ name, namespace: target.namespace });
        await this.core.patchNamespacedEvent(
          {
            name,
            namespace: target.namespace,
            body: { count: (existing.count ?? 1) + 1, lastTimestamp: now },
          },
          mergePatch(),
        );
      } catch (e) {
        this.logger.debug({ err: String(e) }, "could not update event count");
      }
    }
  }
}
