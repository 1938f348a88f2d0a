// The image runs what the build emits: the Dockerfile copies tsconfig.build.json's outDir into the
// runtime stage and its ENTRYPOINT starts package.json's bin, as a non-root user.

import { existsSync, readFileSync } from "node:fs";
import { dirname, join, posix, resolve } from "node:path";
import { expect } from "chai";
import { fromImages } from "../cluster/project-image.js";

const REPO = resolve(import.meta.dirname, "..", "..");

interface Instruction {
  op: string;
  args: string;
}

/** Dockerfile instructions, with `\` continuations joined and comments dropped. */
function instructions(text: string): Instruction[] {
  const joined = text.replace(/\\\r?\n/g, " ");
  return joined
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l !== "" && !l.startsWith("#"))
    .map((l) => {
      const [op = "", ...rest] = l.split(/\s+/);
      return { op: op.toUpperCase(), args: rest.join(" ") };
    });
}

interface Stage {
  name?: string;
  steps: Instruction[];
}

function stages(all: Instruction[]): Stage[] {
  const out: Stage[] = [];
  for (const i of all) {
    if (i.op === "FROM") {
      const m = /\sAS\s+(\S+)/i.exec(` ${i.args}`);
      out.push({ name: m?.[1], steps: [] });
    } else out.at(-1)?.steps.push(i);
  }
  return out;
}

/** compilerOptions of a tsconfig with its `extends` chain applied (relative extends only). */
function compilerOptions(path: string): Record<string, string> {
  const config = JSON.parse(readFileSync(path, "utf8")) as {
    extends?: string;
    compilerOptions?: Record<string, string>;
  };
  const base = config.extends ? compilerOptions(resolve(dirname(path), config.extends)) : {};
  return { ...base, ...config.compilerOptions };
}

function workdir(stage: Stage): string {
  let dir = "/";
  for (const s of stage.steps) if (s.op === "WORKDIR") dir = posix.resolve(dir, s.args);
  return dir;
}

describe("Dockerfile", () => {
  const all = instructions(readFileSync(join(REPO, "Dockerfile"), "utf8"));
  const [build, runtime] = [stages(all).at(0)!, stages(all).at(-1)!];
  const options = compilerOptions(join(REPO, "tsconfig.build.json"));
  const outDir = posix.normalize(options.outDir ?? "").replace(/\/$/, "");
  const pkg = JSON.parse(readFileSync(join(REPO, "package.json"), "utf8")) as { bin: Record<string, string> };
  const bin = posix.normalize(pkg.bin["tekton-affinity"]!);

  it("is multi-stage and builds with npm ci and npm run build", () => {
    expect(stages(all).length).to.be.at.least(2);
    const runs = build.steps.filter((s) => s.op === "RUN").map((s) => s.args);
    expect(runs.some((r) => r.includes("npm ci"))).to.equal(true);
    expect(runs.some((r) => r.includes("npm run build"))).to.equal(true);
  });

  it("package.json's bin is a file the build emits (inside outDir, from a source that exists)", () => {
    expect(outDir).to.not.equal("");
    expect(bin.startsWith(`${outDir}/`), `${bin} under ${outDir}/`).to.equal(true);
    const rootDir = options.rootDir ?? ".";
    const source = join(REPO, rootDir, bin.slice(outDir.length + 1).replace(/\.js$/, ".ts"));
    expect(existsSync(source), source).to.equal(true);
  });

  it("copies the build's outDir, package.json and node_modules into the runtime stage", () => {
    const from = build.name;
    expect(from, "the build stage is named").to.be.a("string");
    const copies = runtime.steps
      .filter((s) => s.op === "COPY" && s.args.includes(`--from=${from}`))
      .map((s) => s.args.split(/\s+/).filter((a) => !a.startsWith("--")));
    const buildDir = workdir(build);
    const runDir = workdir(runtime);
    const copied = copies.map(([src = "", dest = ""]) => ({
      src: posix.relative(buildDir, posix.resolve(buildDir, src)),
      dest: posix.relative(runDir, posix.resolve(runDir, dest)),
    }));
    expect(copied).to.deep.include({ src: outDir, dest: outDir });
    expect(copied).to.deep.include({ src: "package.json", dest: "package.json" });
    expect(copied).to.deep.include({ src: "node_modules", dest: "node_modules" });
  });

  it("its ENTRYPOINT runs package.json's bin as `controller`", () => {
    const entrypoints = runtime.steps.filter((s) => s.op === "ENTRYPOINT");
    expect(entrypoints).to.have.length(1);
    const argv = JSON.parse(entrypoints[0]!.args) as string[];
    const script = argv.find((a) => a.endsWith(".js"));
    expect(script, `a .js script in ${argv}`).to.be.a("string");
    expect(posix.relative(workdir(runtime), posix.resolve(workdir(runtime), script!))).to.equal(bin);
    expect(argv.at(-1)).to.equal("controller");
  });

  it("runs as a non-root user", () => {
    const user = runtime.steps.filter((s) => s.op === "USER").at(-1)?.args ?? "";
    expect(user).to.not.match(/^(root|0)(:|$)/);
    expect(user).to.not.equal("");
  });

  it("builds and runs on one supported Node.js LTS (an even major, 22 or later: 20 ended in April 2026)", () => {
    const froms = readFileSync(join(REPO, "Dockerfile"), "utf8")
      .split(/\r?\n/)
      .filter((l) => /^FROM\s/i.test(l));
    const majors = froms.map((l) => Number(/node(?:js)?:?(\d+)/.exec(l)?.[1]));
    expect(majors).to.have.length(2);
    expect(majors[0]).to.equal(majors[1]);
    expect(majors[0]! % 2).to.equal(0);
    expect(majors[0]).to.be.at.least(22);
  });
});

describe("the images make image needs a local stand-in for", () => {
  it("are the FROM images, not the Dockerfile's own stages", () => {
    const dockerfile =
      "FROM node:22 AS build\nRUN true\nFROM --platform=linux/amd64 build AS test\nFROM gcr.io/x/y:z\nCOPY --from=build /a /a\n";
    expect(fromImages(dockerfile)).to.deep.equal(["node:22", "gcr.io/x/y:z"]);
  });

  it("cover this project's Dockerfile: its build and runtime bases", () => {
    expect(fromImages(readFileSync(join(REPO, "Dockerfile"), "utf8"))).to.deep.equal([
      "node:22-bookworm",
      "gcr.io/distroless/nodejs22-debian12:nonroot",
    ]);
  });
});
