// What a hostile tenant can throw at the controller, for the e2e (safety.test.ts) and bench/decoys.ts:
// StatefulSets wearing our placeholder labels with large annotations (every replica lists and watches
// that label), and a flood of large POSTs at the webhook port from an address of the tenant's own.

import { connect as connectTcp } from "node:net";
import { connect } from "node:tls";
import {
  COMPONENT_LABEL,
  PLACEHOLDER_COMPONENT,
  PLACEHOLDER_RUN_UID_LABEL,
} from "../../src/api/constants.js";
import type { LocalCluster } from "../cluster/cluster.js";

/** Creates `count` decoy StatefulSets in `namespace`: our placeholder labels, no pods (replicas 0), and an
 * annotation of `annotationBytes`; `concurrency` creates at a time. */
export async function createDecoys(
  cluster: LocalCluster,
  namespace: string,
  count: number,
  annotationBytes: number,
  concurrency = 16,
): Promise<void> {
  const padding = "x".repeat(annotationBytes);
  let next = 0;
  const worker = async () => {
    for (let i = next++; i < count; i = next++) {
      const labels = {
        [COMPONENT_LABEL]: PLACEHOLDER_COMPONENT,
        [PLACEHOLDER_RUN_UID_LABEL]: `decoy-${i}`,
        app: "decoy",
      };
      await cluster.clients.apps.createNamespacedStatefulSet({
        namespace,
        body: {
          metadata: { name: `decoy-${i}`, labels, annotations: { "decoy.example/padding": padding } },
          spec: {
            replicas: 0,
            serviceName: "decoy",
            selector: { matchLabels: { app: "decoy", [PLACEHOLDER_RUN_UID_LABEL]: `decoy-${i}` } },
            template: {
              metadata: { labels },
              spec: { containers: [{ name: "c", image: "registry.k8s.io/pause:3.10" }] },
            },
          },
        },
      });
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
}

export interface FloodOptions {
  port: number;
  /** Concurrent connections, each posting again as soon as its last answer came or it was closed. */
  connections: number;
  /** Body bytes of each POST (its Content-Length), sent at once. */
  bodyBytes: number;
  /** The source address the flood comes from: not the apiserver's (a tenant's pod has its own). On this
   * machine any 127.0.0.0/8 address works. */
  sourceAddress: string;
  path?: string;
}

export interface FloodTally {
  requests: number;
  /** Answered 429: refused unread by the webhook server's byte budget. */
  refused: number;
  /** Any other answer (a 4xx for a body that is no AdmissionReview). */
  answered: number;
  /** Connections that ended without an answer. */
  dropped: number;
}

/** Large POSTs at the webhook port, over TLS, from `sourceAddress`, until stop(). */
export class WebhookFlood {
  private running = false;
  private loops: Promise<void>[] = [];
  readonly tally: FloodTally = { requests: 0, refused: 0, answered: 0, dropped: 0 };

  constructor(private readonly o: FloodOptions) {}

  start(): void {
    this.running = true;
    const body = Buffer.alloc(this.o.bodyBytes, "x");
    body.write('{"a":"');
    body.write('"}', this.o.bodyBytes - 2);
    for (let i = 0; i < this.o.connections; i++) this.loops.push(this.loop(body));
  }

  async stop(): Promise<FloodTally> {
    this.running = false;
    await Promise.all(this.loops);
    return this.tally;
  }

  private async loop(body: Buffer): Promise<void> {
    while (this.running) {
      this.tally.requests++;
      const status = await this.post(body);
      if (status === 429) this.tally.refused++;
      else if (status) this.tally.answered++;
      else this.tally.dropped++;
    }
  }

  /** One POST on a fresh connection; its status, or 0 when none came. */
  private post(body: Buffer): Promise<number> {
    return new Promise((resolve) => {
      let data = "";
      let done = false;
      const finish = (status: number) => {
        if (done) return;
        done = true;
        socket.destroy();
        resolve(status);
      };
      // From the flood's own address (TLS's options do not take one: the TCP socket does).
      const tcp = connectTcp({ host: "127.0.0.1", port: this.o.port, localAddress: this.o.sourceAddress });
      const socket = connect({ socket: tcp, rejectUnauthorized: false }, () => {
        socket.write(
          `POST ${this.o.path ?? "/mutate/pods"} HTTP/1.1\r\nHost: webhook\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n`,
        );
        socket.write(body);
      });
      socket.setTimeout(15_000, () => finish(0));
      socket.on("data", (chunk) => {
        data += chunk.toString();
        const m = /^HTTP\/1\.1 (\d{3})/.exec(data);
        if (m) finish(Number(m[1]));
      });
      socket.on("error", () => finish(0));
      socket.on("close", () => finish(0));
    });
  }
}
