import assert from "node:assert/strict";
import { discoverHandler } from "../../runtime/mongrel2/discover.ts";
import {
  findFreePort,
  m2shLoad,
  runCli,
  runMongrel2,
  spawnCli,
  tempDir,
} from "./helpers.ts";

const isRoot = Deno.uid() === 0;

const SIZE_APP = `export default {
  async fetch(request: Request): Promise<Response> {
    const body = new Uint8Array(await request.arrayBuffer());
    return new Response(\`\${new URL(request.url).pathname} \${body.length}\\n\`);
  },
};
`;

/** The m2fetch flags printed in the header of mongrel2-conf's output. */
function matchingFlags(text: string): string[] {
  const lines = text.split("\n");
  const at = lines.indexOf("# m2fetch options that match it:");
  assert.ok(at >= 0, text);
  return lines[at + 1].replace(/^#\s+/, "").split(" ");
}

async function roundTrip(chroot: boolean): Promise<void> {
  await using tmp = await tempDir(chroot ? "m2cc-" : "m2cn-");
  const site = `${tmp.path}/site`;
  for (const sub of ["run", "logs", "tmp"]) {
    await Deno.mkdir(`${site}/${sub}`, { recursive: true });
  }
  const app = `${tmp.path}/app.ts`;
  await Deno.writeTextFile(app, SIZE_APP);
  const port = await findFreePort();
  const sendSpec = `ipc://${site}/run/conf_send`;
  const recvSpec = `ipc://${site}/run/conf_recv`;
  const { code, stdout, stderr } = await runCli([
    "mongrel2-conf",
    ...(chroot
      ? [
        "--mongrel2-chroot",
        site,
        "--upload-temp-store",
        "/tmp/upload.XXXXXX",
      ]
      : ["--mongrel2-dir", site]),
    "--port",
    String(port),
    "--send-spec",
    sendSpec,
    "--recv-spec",
    recvSpec,
    "--send-ident",
    "conf-test",
  ]);
  assert.equal(code, 0, stderr);
  assert.match(stdout, /recv_ident="conf-test"/);
  assert.match(stdout, /protocol="tnetstring"/);
  assert.match(stdout, /chroot=""|chroot="\.\/"/);
  await Deno.writeTextFile(`${site}/mongrel2.conf`, stdout);
  await m2shLoad(site);

  // What mongrel2 loaded is what m2fetch wants.
  const found = discoverHandler(`${site}/config.sqlite`);
  assert.equal(found.sendIdent, "conf-test");
  assert.equal(found.recvIdent, "conf-test");
  assert.equal(found.protocol, "tnetstring");
  assert.equal(found.flowControl, true);
  assert.equal(found.contentLength, 20480);
  assert.equal(found.sendSpec, sendSpec);
  assert.equal(found.recvSpec, recvSpec);
  assert.equal(
    found.configSendSpec,
    chroot ? "ipc://run/conf_send" : sendSpec,
  );
  assert.deepEqual(
    found.uploads,
    chroot
      ? { template: "/tmp/upload.XXXXXX", mode: "0644", chroot: site }
      : { template: `${site}/tmp/upload.XXXXXX`, mode: "0644" },
  );
  assert.deepEqual(found.warnings, []);

  const flags = matchingFlags(stdout);
  assert.deepEqual(flags.slice(0, 4), [
    "--send-spec",
    sendSpec,
    "--recv-spec",
    recvSpec,
  ]);
  const uuid = /uuid="([^"]+)"/.exec(stdout)![1];
  await using _m2 = await runMongrel2(site, uuid, port, [
    `${site}/run/conf_send`,
    `${site}/run/conf_recv`,
  ]);
  await using cli = await spawnCli([...flags, app]);
  const url = `http://127.0.0.1:${port}`;
  assert.equal(await (await fetch(`${url}/small`)).text(), "/small 0\n");
  const big = await fetch(`${url}/big`, {
    method: "POST",
    body: new Uint8Array(40_000).fill(66),
  });
  assert.equal(await big.text(), "/big 40000\n");
  assert.equal((await cli.stop()).code, 0, cli.output());
  assert.deepEqual([...Deno.readDirSync(`${site}/tmp`)], []);
}

Deno.test("cli mongrel2-conf: the output loads with m2sh load and serves through mongrel2 with the flags it prints", () =>
  roundTrip(false));

Deno.test({
  name:
    "cli mongrel2-conf --mongrel2-chroot: a chrooted mongrel2 (as root) loads and serves it, uploads included",
  ignore: !isRoot,
  fn: () => roundTrip(true),
});

Deno.test("cli mongrel2-conf: several specs, or a spec outside the chroot, are refused with a reason", async () => {
  const several = await runCli([
    "mongrel2-conf",
    "--send-spec",
    "tcp://127.0.0.1:1",
    "--send-spec",
    "tcp://127.0.0.1:2",
  ]);
  assert.equal(several.code, 2);
  assert.match(
    several.stderr,
    /Cannot render one mongrel2\.conf for 2 send and 1 recv specs: render one per mongrel2 server/,
  );
  const outside = await runCli([
    "mongrel2-conf",
    "--mongrel2-chroot",
    "/srv/site",
    "--upload-temp-store",
    "/tmp/upload.XXXXXX",
    "--send-spec",
    "ipc:///elsewhere/send",
  ]);
  assert.equal(outside.code, 2);
  assert.match(outside.stderr, /lies outside the chroot \/srv\/site/);
  const defaults = await runCli(["mongrel2-conf", "--mongrel2-dir", "/srv/x"]);
  assert.equal(defaults.code, 0, defaults.stderr);
  assert.match(defaults.stdout, /send_spec="tcp:\/\/127\.0\.0\.1:9997"/);
  assert.match(defaults.stdout, /"download\.flow_control": 1/);
  assert.match(
    defaults.stdout,
    /"upload\.temp_store": "\/srv\/x\/tmp\/upload\.XXXXXX"/,
  );
  assert.match(defaults.stdout, /"upload\.temp_store_mode": "0644"/);
});
