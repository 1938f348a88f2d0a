import { expect } from "chai";
import { Command } from "commander";
import { controllerOptions, registerControllerCommand } from "../../src/cli/controller-command.js";
import { adoptRenamedVariables, parseBoolean } from "../../src/cli/environment.js";
import type { ControllerOptions } from "../../src/controller/options.js";

/** Parses `controller` with the given environment and flags into the options a replica would run with,
 * or the error a replica would exit with. The environment is the given one only (none of the host's). */
async function parse(env: Record<string, string>, flags: string[] = []): Promise<ControllerOptions | Error> {
  const saved = process.env;
  process.env = { ...env };
  const warn = process.emitWarning;
  process.emitWarning = (() => undefined) as typeof process.emitWarning;
  let parsed: ControllerOptions | undefined;
  try {
    const program = new Command().exitOverride();
    registerControllerCommand(program)
      .exitOverride()
      .action((opts: Record<string, unknown>) => {
        parsed = controllerOptions(opts);
      });
    return await program.parseAsync(["node", "main", "controller", ...flags]).then(
      () => parsed!,
      (err: Error) => err,
    );
  } finally {
    process.env = saved;
    process.emitWarning = warn;
  }
}

async function options(env: Record<string, string>, flags: string[] = []): Promise<ControllerOptions> {
  const o = await parse(env, flags);
  if (o instanceof Error) throw o;
  return o;
}

describe("controller command options", () => {
  it("says a port variable holding a kubelet Service link is one, and how to stop it", async () => {
    const err = await parse({ TEKTON_AFFINITY_WEBHOOK_PORT: "tcp://10.96.242.146:443" });
    expect(err).to.be.instanceOf(Error);
    expect((err as Error).message)
      .to.include('--webhook-port got "tcp://10.96.242.146:443"')
      .and.include("enableServiceLinks: false");
  });

  it("still says what a plain bad port is", async () => {
    const err = await parse({ TEKTON_AFFINITY_WEBHOOK_PORT: "nine" });
    expect((err as Error).message).to.equal('--webhook-port must be a positive whole number, got "nine"');
  });

  describe("booleans are read by value", () => {
    it("TEKTON_AFFINITY_REDIS_TLS=false and =0 leave TLS off; =true and =1 turn it on", async () => {
      expect((await options({})).redisTls).to.equal(false);
      for (const off of ["false", "0", "FALSE", "no"])
        expect((await options({ TEKTON_AFFINITY_REDIS_TLS: off })).redisTls, off).to.equal(false);
      for (const on of ["true", "1", "True", "yes"])
        expect((await options({ TEKTON_AFFINITY_REDIS_TLS: on })).redisTls, on).to.equal(true);
    });

    it("TEKTON_AFFINITY_MANAGE_WEBHOOK_CONFIGURATIONS=true keeps management on; =false turns it off", async () => {
      expect((await options({})).manageWebhookConfigurations).to.equal(true);
      const on = await options({ TEKTON_AFFINITY_MANAGE_WEBHOOK_CONFIGURATIONS: "true" });
      expect(on.manageWebhookConfigurations).to.equal(true);
      const off = await options({ TEKTON_AFFINITY_MANAGE_WEBHOOK_CONFIGURATIONS: "false" });
      expect(off.manageWebhookConfigurations).to.equal(false);
    });

    it("the flags alone, with a value, and negated mean what they say", async () => {
      expect((await options({}, ["--redis-tls"])).redisTls).to.equal(true);
      expect((await options({}, ["--redis-tls=false"])).redisTls).to.equal(false);
      expect(
        (await options({}, ["--no-manage-webhook-configurations"])).manageWebhookConfigurations,
      ).to.equal(false);
      expect(
        (await options({}, ["--manage-webhook-configurations=false"])).manageWebhookConfigurations,
      ).to.equal(false);
    });

    it("a value that is not a boolean is an error naming the flag and its variable", async () => {
      const err = await parse({ TEKTON_AFFINITY_REDIS_TLS: "maybe" });
      expect((err as Error).message).to.equal(
        '--redis-tls (TEKTON_AFFINITY_REDIS_TLS) must be true or false (also 1/0, yes/no, on/off), got "maybe"',
      );
    });
  });

  describe("every variable carries the prefix; the old names still work", () => {
    it("reads the prefixed names", async () => {
      const o = await options({
        TEKTON_AFFINITY_REDIS_URL: "redis://queue:6380",
        TEKTON_AFFINITY_REDIS_PASSWORD: "s3cret",
        TEKTON_AFFINITY_NAMESPACE: "ops",
        TEKTON_AFFINITY_REPLICA_ID: "replica-7",
      });
      expect([o.redisUrl, o.redisPassword, o.namespace, o.replicaId]).to.deep.equal([
        "redis://queue:6380",
        "s3cret",
        "ops",
        "replica-7",
      ]);
    });

    it("reads REDIS_URL, REDIS_PASSWORD, POD_NAMESPACE and POD_NAME when the new names are unset", async () => {
      const o = await options({
        REDIS_URL: "redis://old:6379",
        REDIS_PASSWORD: "old",
        POD_NAMESPACE: "old-ns",
        POD_NAME: "old-pod",
      });
      expect([o.redisUrl, o.redisPassword, o.namespace, o.replicaId]).to.deep.equal([
        "redis://old:6379",
        "old",
        "old-ns",
        "old-pod",
      ]);
    });

    it("prefers the new name, and warns about each old one", () => {
      const { adopted, warnings } = adoptRenamedVariables({
        POD_NAME: "old",
        REDIS_URL: "redis://old",
        TEKTON_AFFINITY_REDIS_URL: "redis://new",
      });
      expect(adopted).to.deep.equal({ TEKTON_AFFINITY_REPLICA_ID: "old" });
      expect(warnings).to.deep.equal([
        "REDIS_URL is deprecated and ignored, since TEKTON_AFFINITY_REDIS_URL is set: remove REDIS_URL",
        "POD_NAME is deprecated and will be removed: set TEKTON_AFFINITY_REPLICA_ID instead",
      ]);
      expect(adoptRenamedVariables({ KUBECONFIG: "/k" })).to.deep.equal({ adopted: {}, warnings: [] });
    });
  });

  describe("an operator-wide placeholder image", () => {
    it("defaults to pause and is set by flag or variable", async () => {
      expect((await options({})).tenancy.defaultPlaceholderImage).to.equal("registry.k8s.io/pause:3.10");
      const o = await options({ TEKTON_AFFINITY_DEFAULT_PLACEHOLDER_IMAGE: "mirror.corp/pause:3.10" });
      expect(o.tenancy.defaultPlaceholderImage).to.equal("mirror.corp/pause:3.10");
    });

    it("must come from the allowed registries when they are set", async () => {
      const err = await parse({}, ["--allowed-image-registries=mirror.corp"]);
      expect((err as Error).message).to.include(
        "--default-placeholder-image registry.k8s.io/pause:3.10 is not from --allowed-image-registries (mirror.corp)",
      );
      const o = await options({}, [
        "--allowed-image-registries=mirror.corp",
        "--default-placeholder-image=mirror.corp/pause:3.10",
      ]);
      expect(o.tenancy.defaultPlaceholderImage).to.equal("mirror.corp/pause:3.10");
    });
  });

  it("serves metrics on a port of their own, 9090 unless set", async () => {
    expect((await options({})).metricsPort).to.equal(9090);
    expect((await options({ TEKTON_AFFINITY_METRICS_PORT: "0" })).metricsPort).to.equal(0);
    const err = await parse({}, ["--metrics-port=9443"]);
    expect((err as Error).message).to.include("--metrics-port and --webhook-port are both 9443");
  });
});

describe("parseBoolean", () => {
  it("accepts the usual spellings, trimmed and in any case", () => {
    const p = parseBoolean("--x", "X");
    expect([" TRUE ", "On", "1"].map(p)).to.deep.equal([true, true, true]);
    expect(["false", "Off", "0"].map(p)).to.deep.equal([false, false, false]);
    expect(() => p("")).to.throw('--x (X) must be true or false (also 1/0, yes/no, on/off), got ""');
  });
});
