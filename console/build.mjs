// Bundles src/main.tsx into ../server/console_bundle: assets/app-<hash>.js, assets/app-<hash>.css and an
// index.html that loads them (no inline script, for the server's CSP). The output depends only on the sources
// and the pinned esbuild, so CI can rebuild it and compare.
// Usage: node build.mjs [--watch]
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

import * as esbuild from "esbuild";

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, "..", "server", "console_bundle");

const options = {
  entryPoints: [join(here, "src", "main.tsx")],
  bundle: true,
  minify: true,
  format: "esm",
  target: "es2020",
  jsx: "automatic",
  jsxImportSource: "preact",
  entryNames: "app-[hash]",
  outdir: join(out, "assets"),
  write: false,
  legalComments: "none",
  logLevel: "warning",
};

function page(script, style) {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>simplane</title>
<link rel="stylesheet" href="/assets/${style}">
<script type="module" src="/assets/${script}"></script>
</head>
<body>
<div id="app"></div>
</body>
</html>
`;
}

function write(result) {
  rmSync(out, { recursive: true, force: true });
  mkdirSync(join(out, "assets"), { recursive: true });
  const names = {};
  for (const file of result.outputFiles) {
    writeFileSync(file.path, file.contents);
    names[file.path.endsWith(".css") ? "css" : "js"] = basename(file.path);
  }
  writeFileSync(join(out, "index.html"), page(names.js, names.css));
  console.log(`console bundle: ${names.js} ${names.css} -> ${out}`);
}

if (process.argv.includes("--watch")) {
  const context = await esbuild.context({
    ...options,
    plugins: [{ name: "write", setup: (build) => build.onEnd((result) => result.errors.length || write(result)) }],
  });
  await context.watch();
} else {
  write(await esbuild.build(options));
}
