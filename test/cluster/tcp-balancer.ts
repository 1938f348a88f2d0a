// A round-robin TCP balancer on a free loopback port, standing in for a Kubernetes Service in front of
// several controller replicas: the apiserver calls one webhook URL and connections spread over the
// replicas. TLS passes through (every replica serves the same certificate).
//
// It behaves like a Service, not kinder: its endpoints are the replicas whose readiness probe passes
// (probed every `probeMs`), minus those that are terminating (a pod with a deletionTimestamp leaves a
// Service's ready endpoints at once). A connection goes to one endpoint; if that connection is refused
// or reset, the client sees the error: nothing is retried on another replica.

import { connect, createServer, type Server, type Socket } from "node:net";

export interface Backend {
  port: number;
  /** The replica's readiness probe (GET /readyz). */
  ready: () => Promise<boolean>;
  /** Set from the moment the replica is told to stop. */
  terminating: boolean;
}

export class TcpBalancer {
  private server?: Server;
  private next = 0;
  private readonly sockets = new Set<Socket>();
  private readonly probed = new Map<number, boolean>();
  private probing?: NodeJS.Timeout;
  port = 0;
  /** Connections that reached no replica (refused, reset before connecting, or no endpoint). */
  refused = 0;
  /**
   * Requests cut off: connections the replica closed while the client's last bytes were still
   * unanswered (HTTP/1.1 has one request in flight per connection). Each is an admission that failed.
   */
  readonly cut: { port: number; at: number }[] = [];

  constructor(
    private readonly backends: () => Backend[],
    private readonly probeMs = 500,
  ) {}

  async start(): Promise<number> {
    this.server = createServer((client) => this.forward(client));
    await new Promise<void>((resolve) => this.server!.listen(0, "127.0.0.1", resolve));
    const address = this.server.address();
    this.port = typeof address === "object" && address ? address.port : 0;
    this.probing = setInterval(() => void this.probe(), this.probeMs);
    await this.probe();
    return this.port;
  }

  /** Probes every backend now (also every probeMs). */
  async probe(): Promise<void> {
    await Promise.all(
      this.backends().map(async (b) => this.probed.set(b.port, await b.ready().catch(() => false))),
    );
  }

  /** Ready, not terminating: where new connections go. */
  endpoints(): number[] {
    return this.backends()
      .filter((b) => !b.terminating && this.probed.get(b.port) === true)
      .map((b) => b.port);
  }

  private forward(client: Socket): void {
    const ports = this.endpoints();
    if (ports.length === 0) {
      this.refused++;
      client.destroy();
      return;
    }
    const port = ports[this.next++ % ports.length]!;
    const upstream = connect(port, "127.0.0.1");
    upstream.once("error", () => {
      if (upstream.connecting) this.refused++;
      client.destroy();
      upstream.destroy();
    });
    client.once("error", () => upstream.destroy());
    upstream.once("connect", () => {
      this.sockets.add(client).add(upstream);
      client.pipe(upstream).pipe(client);
      let awaitingAnswer = false;
      client.on("data", () => {
        awaitingAnswer = true;
      });
      upstream.on("data", () => {
        awaitingAnswer = false;
      });
      upstream.once("close", () => {
        if (awaitingAnswer && !client.destroyed) this.cut.push({ port, at: Date.now() });
      });
      const close = () => {
        client.destroy();
        upstream.destroy();
        this.sockets.delete(client);
        this.sockets.delete(upstream);
      };
      client.once("close", close);
      upstream.once("close", close);
    });
  }

  async stop(): Promise<void> {
    if (this.probing) clearInterval(this.probing);
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }
}
