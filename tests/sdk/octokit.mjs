// Signs or verifies a GitHub webhook body with @octokit/webhooks-methods, for tests/sdk/check.py.
//
//   node tests/sdk/octokit.mjs sign SECRET < body              prints `sha256=<hex>`
//   node tests/sdk/octokit.mjs verify SECRET SIGNATURE < body  prints true or false; exits 0 or 1
//
// The package is installed under SDK_NODE_DIR (default: target/sdk-node of the repository);
// the body is read from standard input so its bytes reach the SDK unchanged.

import { readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const PACKAGE = "@octokit/webhooks-methods";

/** Imports the package from the prefix that run.sh installed it into, through its own `exports`. */
async function loadOctokit() {
  const prefix = process.env.SDK_NODE_DIR || join(ROOT, "target", "sdk-node");
  const dir = join(prefix, "node_modules", PACKAGE);
  const manifest = JSON.parse(readFileSync(join(dir, "package.json"), "utf8"));
  const entry = manifest.exports["."].node.import;
  return import(pathToFileURL(join(dir, entry)).href);
}

async function main() {
  const [command, secret, signature] = process.argv.slice(2);
  const payload = readFileSync(0, "utf8");
  const { sign, verify } = await loadOctokit();
  if (command === "sign" && secret) {
    console.log(await sign(secret, payload));
  } else if (command === "verify" && secret && signature) {
    const ok = await verify(secret, payload, signature);
    console.log(String(ok));
    process.exitCode = ok ? 0 : 1;
  } else {
    console.error("usage: octokit.mjs sign SECRET | verify SECRET SIGNATURE  (body on standard input)");
    process.exitCode = 2;
  }
}

await main();
