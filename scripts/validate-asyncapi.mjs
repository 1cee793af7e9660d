// Parses AsyncAPI documents with the official parser (@asyncapi/parser, installed by
// scripts/install-asyncapi.sh) and fails on any diagnostic of error severity.
//   node scripts/validate-asyncapi.mjs PARSER_DIR FILE...
// PARSER_DIR is the install (the directory holding node_modules/@asyncapi/parser). Every
// diagnostic is printed; the exit code is 1 when one of them is an error, 2 on bad usage.
import { createRequire } from "node:module";
import { readFile } from "node:fs/promises";
import { join, resolve } from "node:path";

const [dir, ...files] = process.argv.slice(2);
if (!dir || files.length === 0) {
  console.error("usage: node scripts/validate-asyncapi.mjs PARSER_DIR FILE...");
  process.exit(2);
}
const require = createRequire(join(resolve(dir), "noop.js"));
const { Parser, DiagnosticSeverity } = require("@asyncapi/parser");
const severity = ["error", "warning", "information", "hint"];

const parser = new Parser();
let errors = 0;
for (const file of files) {
  const source = await readFile(file, "utf8");
  const { document, diagnostics } = await parser.parse(source, { source: resolve(file) });
  for (const d of diagnostics) {
    const line = (d.range?.start?.line ?? -1) + 1;
    const path = (d.path ?? []).join(".");
    console.log(`${file}:${line}: ${severity[d.severity] ?? d.severity}: ${d.code}: ${d.message} (at ${path})`);
  }
  const own = diagnostics.filter((d) => d.severity === DiagnosticSeverity.Error).length;
  if (own > 0 || document === undefined) {
    errors += Math.max(own, 1);
    console.log(`${file}: ${own} error(s)`);
  } else {
    console.log(`${file}: valid AsyncAPI ${document.version()}, ${document.operations().length} operation(s), 0 errors`);
  }
}
process.exit(errors > 0 ? 1 : 0);
