import { expect } from "chai";
import { Command } from "commander";
import { registerControllerCommand } from "../../src/cli/controller-command.js";

/** Parses `controller` with the given environment; a parse error rejects before the action would run. */
async function parseWithEnv(env: Record<string, string>): Promise<unknown> {
  const saved = { ...process.env };
  Object.assign(process.env, env);
  try {
    const program = new Command().exitOverride();
    registerControllerCommand(program).exitOverride();
    return await program.parseAsync(["node", "main", "controller"]).then(
      () => undefined,
      (err: Error) => err,
    );
  } finally {
    process.env = saved;
  }
}

describe("controller command options", () => {
  it("says a port variable holding a kubelet Service link is one, and how to stop it", async () => {
    const err = await parseWithEnv({ TEKTON_AFFINITY_WEBHOOK_PORT: "tcp://10.96.242.146:443" });
    expect(err).to.be.instanceOf(Error);
    expect((err as Error).message)
      .to.include('--webhook-port got "tcp://10.96.242.146:443"')
      .and.include("enableServiceLinks: false");
  });

  it("still says what a plain bad port is", async () => {
    const err = await parseWithEnv({ TEKTON_AFFINITY_WEBHOOK_PORT: "nine" });
    expect((err as Error).message).to.equal('--webhook-port must be a positive whole number, got "nine"');
  });
});
