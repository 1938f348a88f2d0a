import { expect } from "chai";
import type { PipelineRun } from "../../src/api/types.js";
import { concurrentPeak } from "../../src/placement/task-dag.js";
import {
  clusterResolverRefusal,
  fits,
  formatResources,
  type LimitRangeDefaults,
  limitRangeDefaults,
  type PipelineSpec,
  type PipelineTask,
  parseCpuMillis,
  parseMemoryBytes,
  parseQuantity,
  pipelineSource,
  pipelineTasks,
  type Resources,
  type TaskSpec,
  taskPodRequests,
  taskRunSpecFor,
  taskSource,
} from "../../src/placement/task-resources.js";
import { run } from "./helpers.js";

const Ki = 1024;
const Mi = 1024 * Ki;
const Gi = 1024 * Mi;

const res = (cpuMillis: number, memoryBytes: number): Resources => ({ cpuMillis, memoryBytes });

const step = (name: string, requests?: Record<string, string | number>, limits?: Record<string, string>) => ({
  name,
  image: "alpine",
  ...(requests || limits
    ? { computeResources: { ...(requests && { requests }), ...(limits && { limits }) } }
    : {}),
});

const FALLBACK = "reserve: LargestTask falls back to None";

describe("task resources", () => {
  describe("quantities", () => {
    it("reads cpu as millicores: milli, fractional, whole and numeric values", () => {
      expect(parseCpuMillis("100m")).to.equal(100);
      expect(parseCpuMillis("0.5")).to.equal(500);
      expect(parseCpuMillis("2")).to.equal(2000);
      expect(parseCpuMillis("1.5")).to.equal(1500);
      expect(parseCpuMillis(".25")).to.equal(250);
      expect(parseCpuMillis(2)).to.equal(2000);
      expect(parseCpuMillis(0.25)).to.equal(250);
      expect(parseCpuMillis("1e3")).to.equal(1_000_000);
      expect(parseCpuMillis(undefined)).to.equal(0);
    });

    it("rounds a fraction of a millicore or of a byte up, as Kubernetes does", () => {
      expect(parseCpuMillis("0.1m")).to.equal(1);
      expect(parseCpuMillis("500u")).to.equal(1);
      expect(parseCpuMillis("1001u")).to.equal(2);
      expect(parseMemoryBytes("500m")).to.equal(1);
      expect(parseMemoryBytes("1.0001k")).to.equal(1001);
    });

    it("reads binary suffixes as powers of 1024", () => {
      expect(parseMemoryBytes("1Ki")).to.equal(1024);
      expect(parseMemoryBytes("128Mi")).to.equal(128 * Mi);
      expect(parseMemoryBytes("1Gi")).to.equal(Gi);
      expect(parseMemoryBytes("1.5Gi")).to.equal(1.5 * Gi);
      expect(parseMemoryBytes("2Ti")).to.equal(2 * 1024 * Gi);
    });

    it("reads decimal suffixes and exponents as powers of 10", () => {
      expect(parseMemoryBytes("1k")).to.equal(1000);
      expect(parseMemoryBytes("500M")).to.equal(500_000_000);
      expect(parseMemoryBytes("2G")).to.equal(2_000_000_000);
      expect(parseMemoryBytes("1T")).to.equal(1e12);
      expect(parseMemoryBytes("1e3")).to.equal(1000);
      expect(parseMemoryBytes("1E3")).to.equal(1000);
      expect(parseMemoryBytes("5e-1")).to.equal(1);
    });

    it("reads plain byte counts, as strings or numbers", () => {
      expect(parseMemoryBytes("1024")).to.equal(1024);
      expect(parseMemoryBytes(134217728)).to.equal(128 * Mi);
      expect(parseMemoryBytes(undefined)).to.equal(0);
    });

    it("parseQuantity gives the value in base units, fractions included", () => {
      expect(parseQuantity("100m")).to.be.closeTo(0.1, 1e-12);
      expect(parseQuantity("1Ki")).to.equal(1024);
      expect(parseQuantity("1.5k")).to.equal(1500);
      expect(parseQuantity("-2")).to.equal(-2);
      expect(parseQuantity(undefined)).to.equal(0);
    });

    it("throws an Error naming the value when it does not parse", () => {
      for (const bad of ["abc", "1Gb", "1 Gi", "", "Mi", "1.2.3", "e3", "1KiB", "--1"]) {
        expect(() => parseMemoryBytes(bad), bad).to.throw(Error, `"${bad}"`);
        expect(() => parseQuantity(bad), bad).to.throw(Error, "not a Kubernetes quantity");
      }
      expect(() => parseCpuMillis("two")).to.throw(/invalid cpu quantity "two"/);
      expect(() => parseMemoryBytes({} as unknown as string)).to.throw(/invalid memory quantity \{\}/);
      expect(() => parseCpuMillis(Number.NaN)).to.throw(/invalid cpu quantity/);
    });

    it("rejects negative requests and values beyond what a number holds exactly", () => {
      expect(() => parseCpuMillis("-1")).to.throw(/"-1": a request cannot be negative/);
      expect(() => parseMemoryBytes("1E")).to.throw(/"1E": too large/);
      expect(() => parseMemoryBytes("1e999999")).to.throw(/too large/);
      expect(parseMemoryBytes("0e999999")).to.equal(0);
    });
  });

  describe("formatResources", () => {
    it("shows cpu in millicores or whole cores and memory in its shortest exact unit", () => {
      expect(formatResources(res(1500, 2 * Gi))).to.equal("cpu 1500m, memory 2Gi");
      expect(formatResources(res(2000, 500_000_000))).to.equal("cpu 2, memory 500M");
      expect(formatResources(res(250, 1536 * Mi))).to.equal("cpu 250m, memory 1536Mi");
      expect(formatResources(res(0, 0))).to.equal("cpu 0, memory 0");
      expect(formatResources(res(1, 1000))).to.equal("cpu 1m, memory 1k");
    });

    it("approximates a memory figure with no short exact form", () => {
      expect(formatResources(res(999, Gi - 1))).to.equal("cpu 999m, memory ~1024Mi");
      expect(formatResources(res(100, 123456789))).to.equal("cpu 100m, memory ~117.7Mi");
    });
  });

  describe("fits", () => {
    it("needs both cpu and memory to fit", () => {
      expect(fits(res(1000, Gi), res(1000, Gi))).to.equal(true);
      expect(fits(res(1000, Gi), res(500, Mi))).to.equal(true);
      expect(fits(res(1000, Gi), res(1001, Mi))).to.equal(false);
      expect(fits(res(1000, Gi), res(500, Gi + 1))).to.equal(false);
    });
  });

  describe("taskPodRequests", () => {
    it("sums the steps and the sidecars (they are all containers of the pod)", () => {
      const spec: TaskSpec = {
        steps: [step("clone", { cpu: "500m", memory: "256Mi" }), step("build", { cpu: "1", memory: "1Gi" })],
        sidecars: [{ name: "docker", computeResources: { requests: { cpu: "250m", memory: "128Mi" } } }],
      };
      expect(taskPodRequests(spec)).to.deep.equal(res(1750, 1408 * Mi));
    });

    it("takes a container's limit as its request when it has none, and 0 without either", () => {
      const spec: TaskSpec = {
        steps: [step("a", undefined, { cpu: "2", memory: "1Gi" }), step("b", { cpu: "100m" }), step("c")],
        sidecars: [{ name: "s", computeResources: { requests: { cpu: "50m" }, limits: { memory: "64Mi" } } }],
      };
      expect(taskPodRequests(spec)).to.deep.equal(res(2150, Gi + 64 * Mi));
    });

    it("accepts the v1beta1 field name `resources`", () => {
      const spec: TaskSpec = {
        steps: [{ name: "a", resources: { requests: { cpu: "300m", memory: "1Gi" } } }],
        sidecars: [{ name: "s", resources: { requests: { cpu: "200m" } } }],
      };
      expect(taskPodRequests(spec)).to.deep.equal(res(500, Gi));
    });

    it("uses the stepTemplate as a default for steps, per resource, and not for sidecars", () => {
      const spec: TaskSpec = {
        stepTemplate: { computeResources: { requests: { cpu: "1", memory: "512Mi" } } },
        steps: [step("a"), step("b", { cpu: "2" })],
        sidecars: [{ name: "s" }],
      };
      // a: 1 cpu, 512Mi from the template; b: its own 2 cpu, the template's 512Mi; the sidecar: nothing.
      expect(taskPodRequests(spec)).to.deep.equal(res(3000, Gi));
    });

    it("names the step whose quantity does not parse", () => {
      const spec: TaskSpec = { steps: [step("ok", { cpu: "1" }), step("compile", { memory: "12XB" })] };
      expect(() => taskPodRequests(spec)).to.throw(/step "compile": invalid memory quantity "12XB"/);
      const sidecar: TaskSpec = {
        steps: [],
        sidecars: [{ name: "db", computeResources: { limits: { cpu: "x" } } }],
      };
      expect(() => taskPodRequests(sidecar)).to.throw(/sidecar "db": invalid cpu quantity "x"/);
    });

    describe("with a LimitRange", () => {
      const limitRange: LimitRangeDefaults = {
        defaultRequest: { cpu: "1", memory: "1Gi" },
        default: { cpu: "2", memory: "2Gi" },
      };

      it("divides the defaultRequest among steps without requests, but gives sidecars all of it", () => {
        const spec: TaskSpec = { steps: [step("a"), step("b")], sidecars: [{ name: "s" }] };
        // steps 500m + 500m, sidecar 1 cpu; memory 512Mi + 512Mi + 1Gi.
        expect(taskPodRequests(spec, { limitRange })).to.deep.equal(res(2000, 2 * Gi));
      });

      it("uses `default` when there is no defaultRequest, as the API server does", () => {
        const spec: TaskSpec = { steps: [step("a"), step("b")], sidecars: [{ name: "s" }] };
        const onlyDefault: LimitRangeDefaults = { default: { cpu: "2", memory: "2Gi" } };
        expect(taskPodRequests(spec, { limitRange: onlyDefault })).to.deep.equal(res(4000, 4 * Gi));
        // Per resource: defaultRequest for cpu, default for memory.
        const mixed: LimitRangeDefaults = {
          defaultRequest: { cpu: "1" },
          default: { cpu: "4", memory: "2Gi" },
        };
        expect(taskPodRequests(spec, { limitRange: mixed })).to.deep.equal(res(2000, 4 * Gi));
      });

      it("gives each step at least the LimitRange min", () => {
        const spec: TaskSpec = { steps: [step("a"), step("b"), step("c"), step("d")] };
        const withMin: LimitRangeDefaults = { defaultRequest: { cpu: "1" }, min: { cpu: "300m" } };
        expect(taskPodRequests(spec, { limitRange: withMin }).cpuMillis).to.equal(1200);
      });

      it("leaves explicit requests alone and prefers the step's share to its limit", () => {
        const spec: TaskSpec = {
          steps: [
            step("a", { cpu: "3", memory: "100Mi" }),
            step("b", undefined, { cpu: "4", memory: "3Gi" }),
          ],
        };
        const cpuOnly: LimitRangeDefaults = { defaultRequest: { cpu: "1" } };
        // b: Tekton sets its cpu request to the share (500m) before Kubernetes would copy the limit;
        // its memory request is its limit.
        expect(taskPodRequests(spec, { limitRange: cpuOnly })).to.deep.equal(res(3500, 3 * Gi + 100 * Mi));
      });

      it("counts Tekton's init containers: the pod requests at least the defaultRequest", () => {
        const spec: TaskSpec = { steps: [step("a", { cpu: "100m", memory: "128Mi" })] };
        expect(taskPodRequests(spec)).to.deep.equal(res(100, 128 * Mi));
        expect(taskPodRequests(spec, { limitRange })).to.deep.equal(res(1000, Gi));
      });

      it("gives Tekton's results sidecar the defaultRequest when asked to count it", () => {
        const spec: TaskSpec = { steps: [step("a", { cpu: "1", memory: "1Gi" })] };
        expect(taskPodRequests(spec, { limitRange, resultsSidecar: true })).to.deep.equal(res(2000, 2 * Gi));
        expect(taskPodRequests(spec, { resultsSidecar: true })).to.deep.equal(res(1000, Gi));
      });
    });

    describe("limitRangeDefaults", () => {
      it("picks the first Container-type item", () => {
        const found = limitRangeDefaults([
          { spec: { limits: [{ type: "PersistentVolumeClaim", min: { storage: "1Gi" } }] } },
          {
            spec: {
              limits: [
                { type: "Pod", max: { cpu: "8" } },
                { type: "Container", defaultRequest: { cpu: "250m" }, default: { cpu: "1", memory: "1Gi" } },
              ],
            },
          },
          { spec: { limits: [{ type: "Container", defaultRequest: { cpu: "4" } }] } },
        ]);
        expect(found).to.deep.equal({
          defaultRequest: { cpu: "250m" },
          default: { cpu: "1", memory: "1Gi" },
        });
      });

      it("keeps min and max, drops other resources, and is undefined without a Container item", () => {
        const found = limitRangeDefaults([
          {
            spec: {
              limits: [
                {
                  type: "Container",
                  min: { cpu: "10m", "ephemeral-storage": "1Gi" },
                  max: { memory: "8Gi" },
                },
              ],
            },
          },
        ]);
        expect(found).to.deep.equal({ min: { cpu: "10m" }, max: { memory: "8Gi" } });
        expect(limitRangeDefaults([{ spec: { limits: [{ type: "Pod", max: { cpu: "8" } }] } }, {}])).to.equal(
          undefined,
        );
        expect(limitRangeDefaults([])).to.equal(undefined);
      });
    });

    describe("with a taskRunSpec", () => {
      it("merges stepSpecs into the named step, per resource", () => {
        const spec: TaskSpec = {
          steps: [step("build", { cpu: "1", memory: "1Gi" }), step("test", { cpu: "500m", memory: "256Mi" })],
        };
        const taskRunSpec = {
          stepSpecs: [{ name: "build", computeResources: { requests: { memory: "4Gi" } } }],
        };
        // build keeps its cpu and gets 4Gi; test is untouched.
        expect(taskPodRequests(spec, { taskRunSpec })).to.deep.equal(res(1500, 4 * Gi + 256 * Mi));
      });

      it("merges sidecarSpecs into the named sidecar", () => {
        const spec: TaskSpec = {
          steps: [step("a", { cpu: "1" })],
          sidecars: [{ name: "db", computeResources: { requests: { cpu: "1", memory: "1Gi" } } }],
        };
        const taskRunSpec = {
          sidecarSpecs: [{ name: "db", computeResources: { requests: { cpu: "250m" } } }],
        };
        expect(taskPodRequests(spec, { taskRunSpec })).to.deep.equal(res(1250, Gi));
      });

      it("replaces the steps' requests with a task-level computeResources, sidecars apart", () => {
        const spec: TaskSpec = {
          stepTemplate: { computeResources: { requests: { memory: "8Gi" } } },
          steps: [step("a", { cpu: "100m" }), step("b", { cpu: "3" })],
          sidecars: [{ name: "s", computeResources: { requests: { cpu: "250m", memory: "64Mi" } } }],
        };
        const taskRunSpec = { computeResources: { requests: { cpu: "1", memory: "2Gi" } } };
        expect(taskPodRequests(spec)).to.deep.equal(res(3350, 16 * Gi + 64 * Mi));
        expect(taskPodRequests(spec, { taskRunSpec })).to.deep.equal(res(1250, 2 * Gi + 64 * Mi));
      });

      it("splits the task-level request as Tekton does, rounding each step's share down", () => {
        const spec: TaskSpec = { steps: [step("a"), step("b"), step("c")] };
        const taskRunSpec = { computeResources: { requests: { cpu: "1" } } };
        expect(taskPodRequests(spec, { taskRunSpec }).cpuMillis).to.equal(999);
      });

      it("drops step requests for resources the task level does not name", () => {
        const spec: TaskSpec = {
          steps: [step("a", { cpu: "1", memory: "1Gi" }), step("b", { memory: "1Gi" })],
        };
        const taskRunSpec = { computeResources: { requests: { cpu: "2" } } };
        expect(taskPodRequests(spec, { taskRunSpec })).to.deep.equal(res(2000, 0));
      });

      it("with task-level limits only, requests them (divided) for steps without requests", () => {
        const spec: TaskSpec = { steps: [step("a"), step("b")] };
        const taskRunSpec = { computeResources: { limits: { cpu: "2", memory: "1Gi" } } };
        expect(taskPodRequests(spec, { taskRunSpec })).to.deep.equal(res(2000, Gi));
      });

      it("with task-level limits only, a step that had requests requests the whole limit (Tekton's quirk)", () => {
        const spec: TaskSpec = { steps: [step("a", { cpu: "100m" }), step("b")] };
        const taskRunSpec = { computeResources: { limits: { cpu: "2" } } };
        // a: requests dropped, Kubernetes copies the 2 cpu limit; b: 1 cpu, its share of the limits.
        expect(taskPodRequests(spec, { taskRunSpec }).cpuMillis).to.equal(3000);
      });
    });
  });

  describe("taskRunSpecFor", () => {
    it("finds the run's taskRunSpecs entry by pipelineTaskName", () => {
      const r = run(
        {},
        {
          taskRunSpecs: [
            { pipelineTaskName: "build", computeResources: { requests: { cpu: "2" } } },
            {
              pipelineTaskName: "test",
              stepSpecs: [{ name: "unit", computeResources: { requests: { cpu: "1" } } }],
            },
          ],
        },
      );
      expect(taskRunSpecFor(r, "test")?.stepSpecs?.[0]?.name).to.equal("unit");
      expect(taskRunSpecFor(r, "build")?.computeResources).to.deep.equal({ requests: { cpu: "2" } });
      expect(taskRunSpecFor(r, "deploy")).to.equal(undefined);
      expect(taskRunSpecFor(run(), "build")).to.equal(undefined);
    });
  });

  describe("pipelineSource", () => {
    const withSpec = (spec: PipelineRun["spec"]) => run({}, spec);

    it("takes an inline pipelineSpec", () => {
      const pipelineSpec = { tasks: [{ name: "a", taskSpec: { steps: [] } }] };
      expect(pipelineSource(withSpec({ pipelineSpec }))).to.deep.equal({ inline: pipelineSpec });
    });

    it("reads a pipelineRef by name from the run's namespace", () => {
      expect(pipelineSource(withSpec({ pipelineRef: { name: "build" } }))).to.deep.equal({
        ref: { name: "build", namespace: "team-a" },
      });
    });

    it("follows the cluster resolver to the namespace it names", () => {
      const params = [
        { name: "kind", value: "pipeline" },
        { name: "name", value: "shared-build" },
        { name: "namespace", value: "ci-catalog" },
      ];
      expect(pipelineSource(withSpec({ pipelineRef: { resolver: "cluster", params } }))).to.deep.equal({
        ref: { name: "shared-build", namespace: "ci-catalog", resolver: "cluster" },
      });
    });

    it("does not follow the cluster resolver for another kind, or without its params", () => {
      const task = pipelineSource(
        withSpec({
          pipelineRef: {
            resolver: "cluster",
            params: [
              { name: "kind", value: "task" },
              { name: "name", value: "x" },
              { name: "namespace", value: "y" },
            ],
          },
        }),
      );
      expect(task).to.have.property("unresolvable").that.contains('"cluster" resolver for kind "task"');
      const noNamespace = pipelineSource(
        withSpec({
          pipelineRef: {
            resolver: "cluster",
            params: [
              { name: "kind", value: "pipeline" },
              { name: "name", value: "x" },
            ],
          },
        }),
      );
      expect(noNamespace).to.have.property("unresolvable").that.contains("without a namespace param");
      const substituted = pipelineSource(
        withSpec({
          pipelineRef: {
            resolver: "cluster",
            params: [
              { name: "kind", value: "pipeline" },
              { name: "name", value: "$(params.pipeline)" },
              { name: "namespace", value: "y" },
            ],
          },
        }),
      );
      expect(substituted).to.have.property("unresolvable").that.contains("parameter substitution");
    });

    it("says which other resolver it cannot follow and that LargestTask falls back to None", () => {
      for (const resolver of ["git", "bundles", "hub", "http"]) {
        const source = pipelineSource(withSpec({ pipelineRef: { resolver, params: [] } }));
        expect(source, resolver).to.have.property("unresolvable").that.contains(`"${resolver}" resolver`);
        expect(source, resolver).to.have.property("unresolvable").that.contains(FALLBACK);
      }
    });

    it("is unresolvable for a run that names no pipeline", () => {
      expect(pipelineSource(withSpec({})))
        .to.have.property("unresolvable")
        .that.contains(FALLBACK);
    });
  });

  describe("clusterResolverRefusal: Tekton's cluster resolver's namespace rules", () => {
    const allows = (ns: string, config: Parameters<typeof clusterResolverRefusal>[1]) =>
      clusterResolverRefusal(ns, config) === undefined;

    it("reads every namespace without settings, or with empty ones", () => {
      expect(allows("catalog", {})).to.equal(true);
      expect(allows("catalog", { "allowed-namespaces": "", "blocked-namespaces": "" })).to.equal(true);
    });

    it("refuses a blocked namespace, even one it also allows", () => {
      expect(clusterResolverRefusal("secret", { "blocked-namespaces": "a,secret" })).to.equal(
        "the cluster resolver's blocked-namespaces lists secret",
      );
      expect(allows("secret", { "blocked-namespaces": "secret", "allowed-namespaces": "secret" })).to.equal(
        false,
      );
      expect(allows("catalog", { "blocked-namespaces": "a,secret" })).to.equal(true);
    });

    it("with an allowed list, reads only the namespaces it names", () => {
      expect(allows("catalog", { "allowed-namespaces": "catalog,tools" })).to.equal(true);
      expect(clusterResolverRefusal("other", { "allowed-namespaces": "catalog,tools" })).to.equal(
        "the cluster resolver's allowed-namespaces does not list other",
      );
    });

    it('blocked "*": only the allowed namespaces, and none when none is allowed', () => {
      expect(allows("catalog", { "blocked-namespaces": "*", "allowed-namespaces": "catalog" })).to.equal(
        true,
      );
      expect(clusterResolverRefusal("other", { "blocked-namespaces": "*", "allowed-namespaces": "catalog" }))
        .to.be.a("string")
        .that.contains('blocked-namespaces is "*"');
      expect(allows("catalog", { "blocked-namespaces": "*" })).to.equal(false);
    });

    it("matches names exactly, as Tekton does: a name with a space around it is another name", () => {
      expect(allows("tools", { "allowed-namespaces": "catalog, tools" })).to.equal(false);
      expect(allows("Catalog", { "allowed-namespaces": "catalog" })).to.equal(false);
    });
  });

  describe("taskSource", () => {
    const task = (fields: Partial<PipelineTask>): PipelineTask => ({ name: "build", ...fields });

    it("takes an inline taskSpec", () => {
      const taskSpec = { steps: [step("a", { cpu: "1" })] };
      expect(taskSource(task({ taskSpec }), "team-a")).to.deep.equal({ inline: taskSpec });
    });

    it("reads a taskRef by name (kind Task or none) from the run's namespace", () => {
      expect(taskSource(task({ taskRef: { name: "golang-build" } }), "team-a")).to.deep.equal({
        ref: { name: "golang-build", namespace: "team-a" },
      });
      expect(taskSource(task({ taskRef: { name: "golang-build", kind: "Task" } }), "team-b")).to.deep.equal({
        ref: { name: "golang-build", namespace: "team-b" },
      });
    });

    it("does not read ClusterTasks", () => {
      const source = taskSource(task({ taskRef: { name: "git-clone", kind: "ClusterTask" } }), "team-a");
      expect(source).to.have.property("unresolvable").that.contains('ClusterTask "git-clone"');
      expect(source).to.have.property("unresolvable").that.contains(FALLBACK);
    });

    it("follows the cluster resolver for kind task, even with the kind Tekton's defaulting sets", () => {
      const params = [
        { name: "kind", value: "task" },
        { name: "name", value: "git-clone" },
        { name: "namespace", value: "catalog" },
      ];
      expect(
        taskSource(task({ taskRef: { resolver: "cluster", kind: "Task", params } }), "team-a"),
      ).to.deep.equal({
        ref: { name: "git-clone", namespace: "catalog", resolver: "cluster" },
      });
      const pipelineKind = [{ name: "kind", value: "pipeline" }, ...params.slice(1)];
      expect(taskSource(task({ taskRef: { resolver: "cluster", params: pipelineKind } }), "team-a"))
        .to.have.property("unresolvable")
        .that.contains('pipeline task "build" uses the "cluster" resolver for kind "pipeline"');
    });

    it("says which other resolver it cannot follow", () => {
      const source = taskSource(task({ taskRef: { resolver: "bundles", params: [] } }), "team-a");
      expect(source).to.have.property("unresolvable").that.contains('"build" uses the "bundles" resolver');
      expect(source).to.have.property("unresolvable").that.contains(FALLBACK);
    });

    it("does not size custom tasks or pipelines in pipelines", () => {
      const custom = taskSource(
        task({ taskRef: { apiVersion: "example.dev/v1", kind: "Wait", name: "w" } }),
        "t",
      );
      expect(custom).to.have.property("unresolvable").that.contains("custom task (example.dev/v1 Wait)");
      const embedded = taskSource(
        task({ taskSpec: { apiVersion: "example.dev/v1", kind: "Wait", spec: {} } }),
        "t",
      );
      expect(embedded).to.have.property("unresolvable").that.contains("custom task");
      const pip = taskSource(task({ pipelineRef: { name: "inner" } }), "t");
      expect(pip).to.have.property("unresolvable").that.contains("pipeline in a pipeline");
      expect(taskSource(task({}), "t"))
        .to.have.property("unresolvable")
        .that.contains("neither taskSpec nor taskRef");
    });
  });

  describe("pipelineTasks", () => {
    it("lists the finally tasks after the tasks", () => {
      const spec: PipelineSpec = {
        tasks: [task("clone"), task("build")],
        finally: [task("notify")],
      };
      expect(pipelineTasks(spec).map((t) => t.name)).to.deep.equal(["clone", "build", "notify"]);
      expect(pipelineTasks({ finally: [task("cleanup")] }).map((t) => t.name)).to.deep.equal(["cleanup"]);
      expect(pipelineTasks({})).to.deep.equal([]);
    });

    it("lets a finally task be the largest", () => {
      const spec: PipelineSpec = {
        tasks: [{ name: "build", taskSpec: { steps: [step("go", { cpu: "2", memory: "1Gi" })] } }],
        finally: [{ name: "report", taskSpec: { steps: [step("upload", { cpu: "500m", memory: "3Gi" })] } }],
      };
      const sized = pipelineTasks(spec).map((t) => {
        const source = taskSource(t, "team-a");
        if (!("inline" in source)) throw new Error("expected an inline task");
        return { name: t.name, requests: taskPodRequests(source.inline) };
      });
      expect(concurrentPeak(sized, spec)).to.deep.equal({
        name: "build (cpu), report (memory)",
        requests: res(2000, 3 * Gi),
      });
    });
  });
});

function task(name: string): PipelineTask {
  return { name, taskRef: { name } };
}
