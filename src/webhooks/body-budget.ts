// How many request bytes the webhook server holds at once. Each request may carry up to MAX_REVIEW_BYTES,
// and the server takes MAX_CONNECTIONS: without a budget, a flood of large POSTs (from anything that can
// reach the port) would have a replica buffer gigabytes and be OOM-killed, taking the webhooks down for
// every namespace. The apiserver's own AdmissionReviews are kilobytes, a few hundred at most.
//
// A request reserves its declared Content-Length (or, sent chunked, the most any review may be) before
// its body is read, and gives it back when its answer is sent or its connection closes. A request that
// would take its source address past its share, or the server past the whole budget, is answered at
// once with 429 and its connection closed, its body never read. Per source, so one sender cannot take the
// room the apiserver's calls need.

import type { NextFunction, Request, Response } from "express";

export interface BodyBudgetOptions {
  /** Bytes all requests in flight may hold together. Default 64 MiB. */
  totalBytes?: number;
  /** Bytes the requests in flight from one source address may hold. Default 16 MiB. */
  perSourceBytes?: number;
  /** What a request without a Content-Length is taken to hold (the largest body the server reads). */
  unknownLengthBytes: number;
  /** Called for each request refused, with the reason ("total" or "source"). */
  onRefused?: (reason: "total" | "source") => void;
}

export class BodyBudget {
  private readonly totalBytes: number;
  private readonly perSourceBytes: number;
  private inFlight = 0;
  private readonly bySource = new Map<string, number>();

  constructor(private readonly o: BodyBudgetOptions) {
    this.totalBytes = o.totalBytes ?? 64 * 1024 * 1024;
    this.perSourceBytes = o.perSourceBytes ?? 16 * 1024 * 1024;
  }

  /** Bytes reserved now, in all and for one source (for tests and metrics). */
  held(source?: string): number {
    return source === undefined ? this.inFlight : (this.bySource.get(source) ?? 0);
  }

  /** Reserves `bytes` for `source`, or says which limit it would pass. */
  take(source: string, bytes: number): "ok" | "total" | "source" {
    const mine = this.bySource.get(source) ?? 0;
    if (mine + bytes > this.perSourceBytes) return "source";
    if (this.inFlight + bytes > this.totalBytes) return "total";
    this.inFlight += bytes;
    this.bySource.set(source, mine + bytes);
    return "ok";
  }

  give(source: string, bytes: number): void {
    this.inFlight -= bytes;
    const left = (this.bySource.get(source) ?? 0) - bytes;
    if (left > 0) this.bySource.set(source, left);
    else this.bySource.delete(source);
  }

  /** Express middleware: reserve before the body parser reads, give back once the exchange is over. */
  middleware() {
    return (req: Request, res: Response, next: NextFunction) => {
      if (req.method !== "POST") return next();
      const declared = Number(req.headers["content-length"]);
      const bytes = Number.isFinite(declared) && declared >= 0 ? declared : this.o.unknownLengthBytes;
      const source = req.socket.remoteAddress ?? "unknown";
      const taken = this.take(source, bytes);
      if (taken !== "ok") {
        this.o.onRefused?.(taken);
        res.setHeader("Connection", "close");
        res.setHeader("Retry-After", "1");
        res.status(429).json({
          error:
            taken === "source"
              ? "too many request bytes in flight from this address; retry later"
              : "too many request bytes in flight; retry later",
        });
        return;
      }
      let given = false;
      const giveBack = () => {
        if (given) return;
        given = true;
        this.give(source, bytes);
      };
      res.once("finish", giveBack);
      res.once("close", giveBack);
      next();
    };
  }
}
