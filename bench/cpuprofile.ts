/**
 * Summarises a V8 `.cpuprofile` (what `deno run --cpu-prof` writes): self
 * and inclusive time per function, and self time per area (m2fetch's own
 * files, Deno's internals, npm packages, GC, idle).
 *
 * @module
 */

/** The parts of a `.cpuprofile` this module reads. */
export interface CpuProfile {
  /** The call tree. */
  nodes: {
    id: number;
    callFrame: {
      functionName: string;
      url: string;
      lineNumber: number;
      columnNumber?: number;
    };
    hitCount?: number;
    children?: number[];
  }[];
  /** Profile start, microseconds. */
  startTime: number;
  /** Profile end, microseconds. */
  endTime: number;
  /** Node id of each sample. */
  samples: number[];
  /** Microseconds before each sample. */
  timeDeltas: number[];
}

/** Time spent in one function or area. */
export interface ProfileEntry {
  /** `name (file:line)`, or an area name. */
  label: string;
  /** Milliseconds. */
  ms: number;
  /** Share of all sampled time (idle included), 0 to 1. */
  share: number;
}

/** A profile boiled down. */
export interface ProfileSummary {
  /** Sampled milliseconds, idle included. */
  totalMs: number;
  /** Milliseconds the thread was idle (waiting in the event loop). */
  idleMs: number;
  /** Functions by self time, most first. */
  self: ProfileEntry[];
  /** Functions by inclusive time (callees counted), most first. */
  inclusive: ProfileEntry[];
  /** Self time by area, most first. */
  areas: ProfileEntry[];
}

/** Options for {@linkcode summarizeProfile}. */
export interface SummaryOptions {
  /** Paths under this prefix are shown relative to it (the repository root). */
  root?: string;
  /** Entries to keep per list. Default 25. */
  top?: number;
  /**
   * Whether a frame counts for the inclusive list. Default: frames in the
   * repository (under `root`), outside `node_modules`.
   */
  inclusiveFilter?: (url: string) => boolean;
}

function shortUrl(url: string, root: string | undefined): string {
  let path = url.replace(/^file:\/\//, "");
  if (root !== undefined && path.startsWith(`${root}/`)) {
    path = path.slice(root.length + 1);
  }
  const modules = path.indexOf("/node_modules/");
  if (modules >= 0) path = path.slice(modules + 1);
  return path;
}

/**
 * Names the area a frame belongs to: a repository directory (`runtime/http`),
 * a Deno extension (`ext:deno_fetch`), an npm package (`npm:zeromq`), or one
 * of V8's pseudo frames (`(garbage collector)`, `(program)`, `(idle)`).
 *
 * @param url The frame's script URL.
 * @param functionName The frame's function name.
 * @param root The repository root.
 * @returns The area.
 *
 * @example Usage
 * ```ts
 * import { areaOf } from "./cpuprofile.ts";
 * console.assert(areaOf("ext:deno_fetch/23_request.js", "x") === "ext:deno_fetch");
 * console.assert(areaOf("file:///r/runtime/http/request.ts", "f", "/r") === "runtime/http");
 * ```
 */
export function areaOf(
  url: string,
  functionName: string,
  root?: string,
): string {
  if (url === "") {
    return functionName.startsWith("(") ? functionName : "(native)";
  }
  if (url.startsWith("ext:") || url.startsWith("node:")) {
    return url.slice(0, url.indexOf("/") > 0 ? url.indexOf("/") : undefined);
  }
  const path = shortUrl(url, root);
  const npm =
    /node_modules\/(?:\.deno\/[^/]+\/node_modules\/)?((?:@[^/]+\/)?[^/]+)/
      .exec(path);
  if (npm !== null) return `npm:${npm[1]}`;
  const slash = path.lastIndexOf("/");
  return slash > 0 ? path.slice(0, slash) : path;
}

/**
 * Computes self time, inclusive time and time per area.
 *
 * @param profile The parsed `.cpuprofile`.
 * @param options Root for short paths, list length, inclusive filter.
 * @returns The summary.
 *
 * @example Usage
 * ```ts
 * import { summarizeProfile } from "./cpuprofile.ts";
 * const summary = summarizeProfile({
 *   nodes: [
 *     { id: 1, callFrame: { functionName: "(root)", url: "", lineNumber: -1 }, children: [2] },
 *     { id: 2, callFrame: { functionName: "work", url: "file:///r/a.ts", lineNumber: 0 } },
 *   ],
 *   startTime: 0, endTime: 3000, samples: [2, 2, 1], timeDeltas: [1000, 1000, 1000],
 * }, { root: "/r" });
 * console.assert(summary.self[0].label === "work (a.ts:1)" && summary.self[0].ms === 2);
 * ```
 */
export function summarizeProfile(
  profile: CpuProfile,
  options: SummaryOptions = {},
): ProfileSummary {
  const top = options.top ?? 25;
  const root = options.root;
  const inRepo = options.inclusiveFilter ??
    ((url: string) =>
      root !== undefined && url.startsWith(`file://${root}/`) &&
      !url.includes("/node_modules/"));
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const parent = new Map<number, number>();
  for (const node of profile.nodes) {
    for (const child of node.children ?? []) parent.set(child, node.id);
  }
  const label = (id: number) => {
    const frame = byId.get(id)!.callFrame;
    if (frame.url === "") return frame.functionName || "(anonymous)";
    return `${frame.functionName || "(anonymous)"} (${
      shortUrl(frame.url, root)
    }:${frame.lineNumber + 1})`;
  };

  const selfUs = new Map<number, number>();
  let totalUs = 0;
  profile.samples.forEach((id, index) => {
    // timeDeltas[i] is the time before sample i; attribute it to sample i.
    const delta = Math.max(0, profile.timeDeltas[index] ?? 0);
    totalUs += delta;
    selfUs.set(id, (selfUs.get(id) ?? 0) + delta);
  });

  const self = new Map<string, number>();
  const areas = new Map<string, number>();
  const inclusive = new Map<string, number>();
  let idleUs = 0;
  for (const [id, us] of selfUs) {
    const frame = byId.get(id)!.callFrame;
    const name = label(id);
    self.set(name, (self.get(name) ?? 0) + us);
    const area = areaOf(frame.url, frame.functionName, root);
    areas.set(area, (areas.get(area) ?? 0) + us);
    if (frame.functionName === "(idle)") idleUs += us;
    const seen = new Set<string>();
    for (
      let at: number | undefined = id;
      at !== undefined;
      at = parent.get(at)
    ) {
      const node = byId.get(at)!;
      if (!inRepo(node.callFrame.url)) continue;
      const key = label(at);
      if (seen.has(key)) continue;
      seen.add(key);
      inclusive.set(key, (inclusive.get(key) ?? 0) + us);
    }
  }
  const list = (map: Map<string, number>, limit: number): ProfileEntry[] =>
    [...map].sort((a, b) => b[1] - a[1]).slice(0, limit).map((
      [name, us],
    ) => ({
      label: name,
      ms: us / 1000,
      share: totalUs > 0 ? us / totalUs : 0,
    }));
  return {
    totalMs: totalUs / 1000,
    idleMs: idleUs / 1000,
    self: list(self, top),
    inclusive: list(inclusive, top),
    areas: list(areas, top),
  };
}
