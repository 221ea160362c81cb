// Validates our AsyncAPI document with the AsyncAPI Initiative's own parser (@asyncapi/parser,
// pinned in package.json and the lock): the AsyncAPI 3 JSON Schema of @asyncapi/specs plus the
// parser's semantic rules (references resolve, operations name their channel's messages...).
// stdin: the AsyncAPI document (JSON)
// stdout: {"version", "errors": [...], "warnings": [...], "channels": [...], "messages": [...]}
"use strict";
const { Parser } = require("@asyncapi/parser");

async function main() {
  const source = require("node:fs").readFileSync(0, "utf8");
  const { document, diagnostics } = await new Parser().parse(source);
  const describe = (d) => ({ code: d.code, message: d.message, path: d.path.join("/") });
  const out = {
    errors: diagnostics.filter((d) => d.severity === 0).map(describe),
    warnings: diagnostics.filter((d) => d.severity === 1).map(describe),
  };
  if (document) {
    out.version = document.version();
    out.channels = document.channels().all().map((c) => c.address());
    out.messages = document.messages().all().map((m) => m.id());
  }
  process.stdout.write(JSON.stringify(out));
}

main().catch((e) => {
  process.stderr.write(String(e && e.stack ? e.stack : e));
  process.exit(2);
});
