#!/usr/bin/env node
// tekton-affinity: co-schedules the pods of Tekton PipelineRuns onto one node.

import { Command } from "commander";
import { version } from "../version.js";
import { registerControllerCommand } from "./controller-command.js";
import { registerExplainCommand } from "./explain-command.js";
import { registerMigrateCommand } from "./migrate-command.js";
import { registerRedisPasswordCommand } from "./redis-password-command.js";
import { registerUninstallCommand } from "./uninstall-command.js";

const program = new Command("tekton-affinity")
  .description(
    "Co-schedule the pods of Tekton PipelineRuns onto one node, per namespace, with AffinityPolicy objects",
  )
  .version(version());
registerControllerCommand(program);
registerMigrateCommand(program);
registerExplainCommand(program);
registerUninstallCommand(program);
registerRedisPasswordCommand(program);

program.parseAsync().catch((err: Error) => {
  console.error(`tekton-affinity: ${err.message}`);
  process.exit(1);
});
