import { expect } from "chai";
import { Outages } from "../../src/queue/outages.js";

describe("Outages", () => {
  it("sums the time of a span spent in outages, an open one lasting until the span's end", () => {
    const o = new Outages();
    o.begin(100);
    o.begin(150); // the same outage, reported by another connection
    o.end(200);
    o.end(250); // already over
    o.begin(400);
    expect(o.down).to.equal(true);
    expect(o.overlapMs(0, 1000)).to.equal(100 + 600);
    expect(o.overlapMs(150, 450)).to.equal(50 + 50);
    expect(o.overlapMs(200, 400)).to.equal(0);
    o.end(500);
    expect(o.down).to.equal(false);
    expect(o.overlapMs(0, 1000)).to.equal(200);
  });

  it("counts the time before this replica started as unavailable: a full outage of ours uses up no maxWait", () => {
    const o = new Outages(1000);
    // A run gated at 0, looked at first at 1200: only the 200 ms since the start count as waiting.
    expect(o.overlapMs(0, 1200)).to.equal(1000);
    // Gated after the start: nothing before it is discounted.
    expect(o.overlapMs(1100, 1200)).to.equal(0);
    // Asked about a span that ends before the start: all of it.
    expect(o.overlapMs(0, 500)).to.equal(500);
    // A Redis outage after the start adds up; none is counted twice with the time before the start.
    o.begin(1300);
    o.end(1400);
    expect(o.overlapMs(0, 2000)).to.equal(1000 + 100);
    o.begin(900); // reported with a clock step back: what lies before the start counted already
    o.end(1050);
    expect(o.overlapMs(0, 2000)).to.equal(1000 + 100 + 50);
  });
});
