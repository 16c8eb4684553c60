// Type-checks the page and builds it into dist/: one script and one stylesheet with
// content hashes in their names (served as immutable) and index.html naming
// them (served as no-cache). The Go package embeds dist/.
import * as esbuild from "esbuild";
import { readFile, writeFile, readdir, rm, mkdir } from "node:fs/promises";
import path from "node:path";
import { execFileSync } from "node:child_process";

// esbuild strips types without checking them: tsc checks them first.
execFileSync(process.execPath, ["node_modules/typescript/bin/tsc", "-p", "."], { stdio: "inherit" });

const dist = "dist";
await mkdir(dist, { recursive: true });
for (const name of await readdir(dist)) {
  if (name !== ".gitkeep") await rm(path.join(dist, name), { recursive: true, force: true });
}

const result = await esbuild.build({
  entryPoints: ["src/main.ts"],
  bundle: true,
  minify: true,
  sourcemap: false,
  format: "esm",
  target: ["es2020"],
  outdir: path.join(dist, "assets"),
  entryNames: "[name]-[hash]",
  metafile: true,
  legalComments: "linked",
  logLevel: "warning",
});

const outputs = Object.keys(result.metafile.outputs).map((p) => "/" + path.relative(dist, p));
const script = outputs.find((p) => p.endsWith(".js"));
const style = outputs.find((p) => p.endsWith(".css"));
if (!script || !style) throw new Error(`build: missing outputs in ${outputs.join(", ")}`);

const html = (await readFile("src/index.html", "utf8"))
  .replace("{{script}}", script)
  .replace("{{style}}", style);
await writeFile(path.join(dist, "index.html"), html);
console.log(`built ${dist}/index.html, ${script}, ${style}`);
