import assert from "node:assert/strict";
import { parseDuration } from "../../cli/options.ts";
import {
  findFreePort,
  m2shLoad,
  ROOT,
  runMongrel2,
  spawnDeno,
  tempDir,
  whenReady,
} from "./helpers.ts";

const isRoot = Deno.uid() === 0;

/** `Key=value` lines of a unit file, continuation lines joined. */
function unitEntries(text: string): Map<string, string> {
  const entries = new Map<string, string>();
  const joined = text.replace(/\\\n\s*/g, " ");
  for (const line of joined.split("\n")) {
    const match = /^([A-Za-z]+)=(.*)$/.exec(line.trim());
    if (match !== null) entries.set(match[1], match[2].trim());
  }
  return entries;
}

Deno.test("examples/m2fetch.service: restarts on failure, stops with SIGTERM, waits longer than the shutdown timeout", async () => {
  const unit = unitEntries(
    await Deno.readTextFile(`${ROOT}/examples/m2fetch.service`),
  );
  assert.equal(unit.get("Restart"), "on-failure");
  assert.equal(unit.get("KillSignal"), "SIGTERM");
  assert.equal(unit.get("User"), "m2fetch");
  assert.equal(unit.get("Group"), "m2fetch");
  assert.equal(unit.get("WorkingDirectory"), "/srv/app");
  const exec = unit.get("ExecStart")!;
  assert.doesNotMatch(exec, /\s(-A|--allow-all)\s/);
  assert.doesNotMatch(exec, /--allow-(env|run|sys|ffi)/);
  // Net access only to mongrel2's handler sockets.
  for (const [, hosts] of exec.matchAll(/--allow-net=(\S+)/g)) {
    for (const host of hosts.split(",")) assert.match(host, /^unix:\//);
  }
  const shutdown = parseDuration(/--shutdown-timeout (\S+)/.exec(exec)![1]);
  const stop = parseDuration(unit.get("TimeoutStopSec")!);
  assert.ok(stop > shutdown, `TimeoutStopSec ${stop} ms <= ${shutdown} ms`);
});

Deno.test({
  name:
    "examples/m2fetch.service + examples/mongrel2.conf: the ExecStart permissions serve requests and uploads through the chrooted mongrel2",
  ignore: !isRoot,
  async fn() {
    await using tmp = await tempDir("m2s-");
    const site = `${tmp.path}/m2`;
    const app = `${tmp.path}/app`;
    for (const sub of ["run", "logs", "tmp"]) {
      await Deno.mkdir(`${site}/${sub}`, { recursive: true });
    }
    await Deno.mkdir(app);
    await Deno.writeTextFile(
      `${app}/app.ts`,
      `export default {
  async fetch(request: Request): Promise<Response> {
    const body = new Uint8Array(await request.arrayBuffer());
    return new Response(\`\${new URL(request.url).pathname} \${body.length}\\n\`);
  },
};
`,
    );
    await Deno.writeTextFile(`${app}/m2fetch.json`, '{ "app": "app.ts" }\n');
    const port = await findFreePort();
    const conf = await Deno.readTextFile(`${ROOT}/examples/mongrel2.conf`);
    assert.match(conf, /port=8080/);
    await Deno.writeTextFile(
      `${site}/mongrel2.conf`,
      conf.replace("port=8080", `port=${port}`),
    );
    await m2shLoad(site);
    const uuid = /uuid="([^"]+)"/.exec(conf)![1];
    await using _m2 = await runMongrel2(site, uuid, port, [
      `${site}/run/m2fetch_send`,
      `${site}/run/m2fetch_recv`,
    ]);

    const unit = unitEntries(
      await Deno.readTextFile(`${ROOT}/examples/m2fetch.service`),
    );
    const words = unit.get("ExecStart")!
      .replaceAll("/opt/m2fetch", ROOT)
      .replaceAll("/srv/app", app)
      .replaceAll("/srv/mongrel2", site)
      .split(/\s+/);
    assert.match(words[0], /^\/\S+\/deno$/);
    assert.equal(words[1], "run");
    await using m2fetch = await whenReady(
      spawnDeno(words.slice(2), {
        cwd: unit.get("WorkingDirectory")!.replace("/srv/app", app),
      }),
      " serving ",
    );
    const url = `http://127.0.0.1:${port}`;
    assert.equal(await (await fetch(`${url}/hi`)).text(), "/hi 0\n");
    const upload = await fetch(`${url}/up`, {
      method: "POST",
      body: new Uint8Array(60_000).fill(1),
    });
    assert.equal(await upload.text(), "/up 60000\n");
    const status = await m2fetch.stop();
    assert.equal(status.code, 0, m2fetch.output());
    assert.doesNotMatch(m2fetch.output(), /NotCapable|Requires .* access/);
    assert.deepEqual([...Deno.readDirSync(`${site}/tmp`)], []);
  },
});
