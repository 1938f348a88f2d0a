// bull-board, the queue UI, on its own admin port. Off unless --admin-port is set; it binds to
// 127.0.0.1 by default, so it is reached with `kubectl port-forward`, never from the network.

import type { Server } from "node:http";
import { createBullBoard } from "@bull-board/api";
import { BullMQAdapter } from "@bull-board/api/bullMQAdapter";
import { ExpressAdapter } from "@bull-board/express";
import type { Queue } from "bullmq";
import express from "express";

export function startAdminUi(queue: Queue, port: number, host = "127.0.0.1"): Promise<Server> {
  const adapter = new ExpressAdapter();
  adapter.setBasePath("/queues");
  createBullBoard({ queues: [new BullMQAdapter(queue)], serverAdapter: adapter });
  const app = express();
  app.use("/queues", adapter.getRouter());
  return new Promise((resolve, reject) => {
    const server = app.listen(port, host, () => resolve(server));
    server.once("error", reject);
  });
}
