import type { KubernetesListObject, V1ConfigMap } from "@kubernetes/client-node";
import { expect } from "chai";
import { listAllTrimmed } from "../../src/kube/informers.js";

describe("listAllTrimmed (an informer's list, page by page)", () => {
  const objects: V1ConfigMap[] = Array.from({ length: 5 }, (_, i) => ({
    metadata: { name: `o${i}`, annotations: { big: "x".repeat(1000) } },
  }));

  it("reads every page, trimming each before it asks for the next, and keeps the list's resourceVersion", async () => {
    const calls: string[] = [];
    const list = async ({ limit, _continue }: { limit: number; _continue?: string }) => {
      calls.push(`list from ${_continue ?? "start"}`);
      const from = Number(_continue ?? 0);
      const next = from + limit < objects.length ? String(from + limit) : undefined;
      return {
        metadata: { resourceVersion: "77", ...(next ? { _continue: next } : {}) },
        items: objects.slice(from, from + limit),
      } as KubernetesListObject<V1ConfigMap>;
    };
    const trim = (o: V1ConfigMap): V1ConfigMap => {
      calls.push(`trim ${o.metadata?.name}`);
      return { metadata: { name: o.metadata?.name } };
    };
    const result = await listAllTrimmed(list, trim, 2);
    expect(result.items).to.deep.equal(objects.map((o) => ({ metadata: { name: o.metadata?.name } })));
    expect(result.metadata?.resourceVersion).to.equal("77");
    expect(result.metadata?._continue).to.equal(undefined);
    expect(calls).to.deep.equal([
      "list from start",
      "trim o0",
      "trim o1",
      "list from 2",
      "trim o2",
      "trim o3",
      "list from 4",
      "trim o4",
    ]);
  });

  it("reads a list that fits one page once", async () => {
    let lists = 0;
    const result = await listAllTrimmed(
      async () => {
        lists++;
        return { metadata: { resourceVersion: "5" }, items: objects } as KubernetesListObject<V1ConfigMap>;
      },
      (o) => o,
    );
    expect(lists).to.equal(1);
    expect(result.items).to.have.length(5);
  });
});
