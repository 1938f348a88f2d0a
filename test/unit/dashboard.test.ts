// The Grafana dashboard and docs/metrics.md must only name metrics the controller really exports.

import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { expect } from "chai";
import { createMetrics } from "../../src/metrics.js";

const ROOT = resolve(import.meta.dirname, "..", "..");

interface Panel {
  title: string;
  targets?: { expr: string }[];
  panels?: Panel[];
}

/** Every series name the registry exposes: histograms as _bucket, _sum and _count. */
async function exportedSeries(): Promise<Set<string>> {
  const { registry } = createMetrics();
  const names = new Set<string>();
  for (const m of await registry.getMetricsAsJSON()) {
    const type = String(m.type);
    if (type === "histogram") for (const s of ["_bucket", "_sum", "_count"]) names.add(m.name + s);
    else if (type === "summary") for (const s of ["", "_sum", "_count"]) names.add(m.name + s);
    else names.add(m.name);
  }
  return names;
}

/** Metric names in a PromQL expression: our prefix up to the first character a name cannot hold. */
function metricNames(expr: string): string[] {
  return [...expr.matchAll(/\btekton_affinity_[a-zA-Z0-9_:]*/g)].map((m) => m[0]);
}

function panels(list: Panel[]): Panel[] {
  return list.flatMap((p) => [p, ...panels(p.panels ?? [])]);
}

describe("grafana dashboard", () => {
  const dashboard = JSON.parse(readFileSync(resolve(ROOT, "deploy/grafana-dashboard.json"), "utf8")) as {
    panels: Panel[];
  };

  it("queries only metrics src/metrics.ts registers", async () => {
    const exported = await exportedSeries();
    const used = panels(dashboard.panels).flatMap((p) =>
      (p.targets ?? []).flatMap((t) => metricNames(t.expr).map((name) => ({ panel: p.title, name }))),
    );
    expect(used.length).to.be.greaterThan(0);
    const unknown = used.filter((u) => !exported.has(u.name));
    expect(unknown, `unknown metrics: ${JSON.stringify(unknown)}`).to.deep.equal([]);
  });

  it("has the expected panels, each with a query", () => {
    const titles = panels(dashboard.panels).map((p) => p.title);
    for (const want of [
      /queue depth/i,
      /job duration/i,
      /retries/i,
      /placement latency/i,
      /webhook latency/i,
      /evictions/i,
      /malformed/i,
    ])
      expect(
        titles.some((t) => want.test(t)),
        `${want} in ${titles}`,
      ).to.equal(true);
    for (const p of panels(dashboard.panels)) expect(p.targets ?? [], p.title).to.not.be.empty;
  });

  it("docs/metrics.md documents every controller metric and names no unknown one", async () => {
    const doc = readFileSync(resolve(ROOT, "docs/metrics.md"), "utf8");
    const exported = await exportedSeries();
    const { registry } = createMetrics();
    const families = new Set<string>();
    for (const m of await registry.getMetricsAsJSON()) {
      families.add(m.name);
      if (/^tekton_affinity_(process|nodejs)_/.test(m.name)) continue; // prom-client's defaults
      expect(doc, m.name).to.contain(`\`${m.name}\``);
    }
    // The doc may name a histogram by its family name, or a prefix ending in "_".
    const unknown = metricNames(doc).filter((n) => !exported.has(n) && !families.has(n) && !n.endsWith("_"));
    expect(unknown).to.deep.equal([]);
  });
});
