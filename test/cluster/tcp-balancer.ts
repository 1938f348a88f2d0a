// A round-robin TCP balancer on a free loopback port, standing in for a Kubernetes Service in front of
// several controller replicas: the apiserver calls one webhook URL, connections spread over replicas,
// and a dead replica is skipped. TLS passes through (every replica serves the same certificate).

import { connect, createServer, type Server, type Socket } from "node:net";

export class TcpBalancer {
  private server?: Server;
  private next = 0;
  private readonly sockets = new Set<Socket>();
  port = 0;

  constructor(private readonly backends: () => number[]) {}

  async start(): Promise<number> {
    this.server = createServer((client) => this.forward(client, 0));
    await new Promise<void>((resolve) => this.server!.listen(0, "127.0.0.1", resolve));
    const address = this.server.address();
    this.port = typeof address === "object" && address ? address.port : 0;
    return this.port;
  }

  private forward(client: Socket, tries: number): void {
    const ports = this.backends();
    if (ports.length === 0 || tries >= ports.length) {
      client.destroy();
      return;
    }
    const port = ports[this.next++ % ports.length]!;
    const upstream = connect(port, "127.0.0.1");
    upstream.once("error", () => {
      // Not connected yet: try the next replica, as a Service's endpoints would.
      if (!upstream.readyState || upstream.connecting) this.forward(client, tries + 1);
      else client.destroy();
    });
    upstream.once("connect", () => {
      this.sockets.add(client).add(upstream);
      client.pipe(upstream).pipe(client);
      const close = () => {
        client.destroy();
        upstream.destroy();
        this.sockets.delete(client);
        this.sockets.delete(upstream);
      };
      client.once("close", close);
      upstream.once("close", close);
      client.once("error", close);
    });
  }

  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }
}
