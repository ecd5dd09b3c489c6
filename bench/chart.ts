/**
 * A hand-written SVG line chart: requests per second against concurrency,
 * one line per server. No dependencies; the output is a standalone file.
 *
 * @module
 */

/** One line of the chart. */
export interface ChartSeries {
  /** Legend text. */
  name: string;
  /** Stroke colour (any SVG colour). */
  color: string;
  /** Draw the line dashed (a reference rather than a contender). */
  dashed?: boolean;
  /** Points; `x` must be positive (the axis is logarithmic). */
  points: { x: number; y: number }[];
}

/** What to draw. */
export interface LineChartOptions {
  /** The heading above the plot. */
  title: string;
  /** A smaller line under the title (e.g. the machine). */
  subtitle?: string;
  /** X axis label. */
  xLabel: string;
  /** Y axis label. */
  yLabel: string;
  /** The lines. */
  series: ChartSeries[];
}

const WIDTH = 800;
const HEIGHT = 440;
const LEFT = 80;
const RIGHT = 230;
/** Vertical room one value label needs. */
const LABEL_HEIGHT = 12;
const TOP = 64;
const BOTTOM = 56;

/**
 * Picks a y axis for values up to `max`: a step of 1, 2, 2.5 or 5 times a
 * power of ten giving about `ticks` intervals, and the top as a whole
 * number of steps at or above `max`.
 *
 * @param max The largest value (0 or less gives a unit axis).
 * @param ticks The number of intervals wanted. Default 5.
 * @returns The top of the axis and the step between ticks.
 *
 * @example Usage
 * ```ts
 * import { niceScale } from "./chart.ts";
 * const scale = niceScale(107_685);
 * console.assert(scale.top === 125_000 && scale.step === 25_000);
 * ```
 */
export function niceScale(
  max: number,
  ticks = 5,
): { top: number; step: number } {
  if (!(max > 0)) return { top: 1, step: 0.2 };
  const raw = max / ticks;
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * power).find((candidate) =>
    candidate >= raw
  )!;
  return { top: Math.ceil(max / step) * step, step };
}

/**
 * Formats a count compactly: `950`, `12.8k`, `116k`, `1.2M`.
 *
 * @param value The number.
 * @returns The label.
 *
 * @example Usage
 * ```ts
 * import { compactNumber } from "./chart.ts";
 * console.assert(compactNumber(12_846) === "12.8k");
 * ```
 */
export function compactNumber(value: number): string {
  const abs = Math.abs(value);
  if (abs >= 1e6) return `${trim(value / 1e6)}M`;
  if (abs >= 1e3) return `${trim(value / 1e3)}k`;
  return trim(value);
}

function trim(value: number): string {
  const abs = Math.abs(value);
  const digits = abs >= 100 ? 0 : abs >= 10 ? 1 : 2;
  return String(Number(value.toFixed(digits)));
}

function escapeXml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/**
 * Renders the chart as an SVG document.
 *
 * @param options Title, labels and lines.
 * @returns The SVG text.
 *
 * @example Usage
 * ```ts
 * import { renderLineChart } from "./chart.ts";
 * const svg = renderLineChart({
 *   title: "hello world",
 *   xLabel: "connections",
 *   yLabel: "requests/s",
 *   series: [{ name: "a", color: "#c00", points: [{ x: 1, y: 5 }, { x: 16, y: 9 }] }],
 * });
 * console.assert(svg.startsWith("<svg") && svg.includes("<polyline"));
 * ```
 */
export function renderLineChart(options: LineChartOptions): string {
  const plotWidth = WIDTH - LEFT - RIGHT;
  const plotHeight = HEIGHT - TOP - BOTTOM;
  const xs = [
    ...new Set(options.series.flatMap((s) => s.points.map((p) => p.x))),
  ]
    .sort((a, b) => a - b);
  // 8% headroom keeps the top value label inside the plot.
  const scale = niceScale(
    1.08 *
      Math.max(0, ...options.series.flatMap((s) => s.points.map((p) => p.y))),
  );
  const yMax = scale.top;
  const logMin = Math.log2(xs[0] ?? 1);
  const logSpan = Math.max(1, Math.log2(xs[xs.length - 1] ?? 2) - logMin);
  // The first and last x sit a little inside the plot, clear of the y labels.
  const inset = 28;
  const px = (x: number) =>
    LEFT + inset +
    ((Math.log2(x) - logMin) / logSpan) * (plotWidth - 2 * inset);
  const py = (y: number) => TOP + plotHeight - (y / yMax) * plotHeight;
  const f = (n: number) => n.toFixed(1);

  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${HEIGHT}" viewBox="0 0 ${WIDTH} ${HEIGHT}" font-family="system-ui, -apple-system, 'Segoe UI', sans-serif" font-size="12">`,
    `<rect width="${WIDTH}" height="${HEIGHT}" fill="#ffffff"/>`,
    `<text x="${LEFT}" y="26" font-size="16" font-weight="600" fill="#111">${
      escapeXml(options.title)
    }</text>`,
  ];
  if (options.subtitle) {
    out.push(
      `<text x="${LEFT}" y="44" fill="#555">${
        escapeXml(options.subtitle)
      }</text>`,
    );
  }
  const ticks = Math.round(yMax / scale.step);
  for (let i = 0; i <= ticks; i++) {
    const value = scale.step * i;
    const y = f(py(value));
    out.push(
      `<line x1="${LEFT}" y1="${y}" x2="${
        LEFT + plotWidth
      }" y2="${y}" stroke="${i === 0 ? "#333" : "#e3e3e3"}"/>`,
      `<text x="${LEFT - 8}" y="${y}" dy="4" text-anchor="end" fill="#333">${
        compactNumber(value)
      }</text>`,
    );
  }
  for (const x of xs) {
    const at = f(px(x));
    out.push(
      `<line x1="${at}" y1="${TOP}" x2="${at}" y2="${
        TOP + plotHeight
      }" stroke="#f0f0f0"/>`,
      `<text x="${at}" y="${
        TOP + plotHeight + 18
      }" text-anchor="middle" fill="#333">${x}</text>`,
    );
  }
  out.push(
    `<text x="${LEFT + plotWidth / 2}" y="${
      HEIGHT - 12
    }" text-anchor="middle" fill="#333">${escapeXml(options.xLabel)}</text>`,
    `<text transform="translate(18 ${
      TOP + plotHeight / 2
    }) rotate(-90)" text-anchor="middle" fill="#333">${
      escapeXml(options.yLabel)
    }</text>`,
  );
  const labels: { x: number; y: number; text: string; color: string }[] = [];
  options.series.forEach((series, index) => {
    const points = [...series.points].sort((a, b) => a.x - b.x);
    const color = escapeXml(series.color);
    const dash = series.dashed ? ` stroke-dasharray="6 4"` : "";
    out.push(
      `<polyline fill="none" stroke="${color}" stroke-width="2.5"${dash} points="${
        points.map((p) => `${f(px(p.x))},${f(py(p.y))}`).join(" ")
      }"/>`,
    );
    for (const p of points) {
      out.push(
        `<circle cx="${f(px(p.x))}" cy="${f(py(p.y))}" r="4" fill="${color}"/>`,
      );
      labels.push({ x: p.x, y: py(p.y), text: compactNumber(p.y), color });
    }
    const ly = TOP + 12 + index * 22;
    const lx = LEFT + plotWidth + 20;
    out.push(
      `<line x1="${lx}" y1="${ly}" x2="${
        lx + 22
      }" y2="${ly}" stroke="${color}" stroke-width="2.5"${dash}/>`,
      `<circle cx="${lx + 11}" cy="${ly}" r="4" fill="${color}"/>`,
      `<text x="${lx + 30}" y="${ly}" dy="4" fill="#111">${
        escapeXml(series.name)
      }</text>`,
    );
  });
  out.push(
    ...placeLabels(labels, px, { top: TOP, bottom: TOP + plotHeight - 3 }),
  );
  out.push("</svg>", "");
  return out.join("\n");
}

/**
 * Puts each value label above its point, or below it when that would
 * overlap another label or point at the same x or leave the plot, or leaves
 * it out (the tables have every number).
 */
function placeLabels(
  labels: { x: number; y: number; text: string; color: string }[],
  px: (x: number) => number,
  bounds: { top: number; bottom: number },
): string[] {
  const out: string[] = [];
  const taken = new Map<number, number[]>();
  for (const label of [...labels].sort((a, b) => a.y - b.y)) {
    const used = taken.get(label.x) ?? [];
    taken.set(label.x, used);
    const points = labels.filter((other) =>
      other !== label && other.x === label.x
    ).map((other) => other.y);
    // A label's glyphs span about 9 px above its baseline and 2 below.
    const free = (baseline: number) =>
      baseline - 9 >= bounds.top && baseline + 2 <= bounds.bottom &&
      used.every((other) => Math.abs(other - baseline) >= LABEL_HEIGHT) &&
      points.every((y) => y < baseline - 14 || y > baseline + 6);
    const baseline = [label.y - 9, label.y + 17].find(free);
    if (baseline === undefined) continue;
    used.push(baseline);
    out.push(
      `<text x="${px(label.x).toFixed(1)}" y="${
        baseline.toFixed(1)
      }" text-anchor="middle" font-size="10" fill="${label.color}">${label.text}</text>`,
    );
  }
  return out;
}
