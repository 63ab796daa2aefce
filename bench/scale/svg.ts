// Line charts as standalone SVG text: one series per dataplane against N (log x axis), y linear or
// log. No dependencies; the scale benchmark writes bench/results/scale-*.svg with it.

export interface Series { name: string; color: string; points: Array<[number, number]> }
export interface Chart {
  title: string;
  yLabel: string;
  logY?: boolean;
  series: Series[];
  /** Text under the plot (machine, date). */
  note?: string;
}

const W = 760, H = 400, L = 78, R = 270, T = 40, B = 62;

function esc(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

function fmt(v: number): string {
  if (v === 0) return "0";
  const a = Math.abs(v);
  if (a >= 1e6) return `${+(v / 1e6).toPrecision(3)}M`;
  if (a >= 1e3) return `${+(v / 1e3).toPrecision(3)}k`;
  return `${+v.toPrecision(3)}`;
}

/** Nice linear ticks covering [0, max]. */
function linearTicks(max: number): number[] {
  if (!(max > 0)) return [0, 1];
  const raw = max / 5, mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw)!;
  const out: number[] = [];
  for (let v = 0; v <= max + step * 0.999; v += step) out.push(+v.toPrecision(12));
  return out;
}

function logTicks(lo: number, hi: number): number[] {
  const out: number[] = [];
  for (let e = Math.floor(Math.log10(lo)); e <= Math.ceil(Math.log10(hi)); e++) out.push(10 ** e);
  return out;
}

export function lineChart(c: Chart): string {
  const pts = c.series.flatMap((s) => s.points).filter(([x, y]) => x > 0 && Number.isFinite(y) && (!c.logY || y > 0));
  const xs = pts.map((p) => p[0]), ys = pts.map((p) => p[1]);
  const xLo = Math.min(...xs, 1), xHi = Math.max(...xs, 10);
  const xTicks = logTicks(xLo, xHi);
  const x0 = Math.log10(xTicks[0]!), x1 = Math.log10(xTicks[xTicks.length - 1]!);
  const yTicks = c.logY ? logTicks(Math.min(...ys, 1), Math.max(...ys, 10)) : linearTicks(Math.max(...ys, 0));
  const y0 = c.logY ? Math.log10(yTicks[0]!) : yTicks[0]!, y1 = c.logY ? Math.log10(yTicks[yTicks.length - 1]!) : yTicks[yTicks.length - 1]!;
  const px = (x: number) => L + ((Math.log10(x) - x0) / (x1 - x0 || 1)) * (W - L - R);
  const py = (y: number) => H - B - (((c.logY ? Math.log10(y) : y) - y0) / (y1 - y0 || 1)) * (H - T - B);
  const o: string[] = [];
  o.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`);
  o.push(`<rect width="${W}" height="${H}" fill="white"/>`);
  o.push(`<text x="${W / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">${esc(c.title)}</text>`);
  for (const t of yTicks) {
    const y = py(t).toFixed(1);
    o.push(`<line x1="${L}" x2="${W - R}" y1="${y}" y2="${y}" stroke="#ddd"/>`);
    o.push(`<text x="${L - 6}" y="${y}" text-anchor="end" dominant-baseline="middle">${fmt(t)}</text>`);
  }
  for (const t of xTicks) {
    const x = px(t).toFixed(1);
    o.push(`<line x1="${x}" x2="${x}" y1="${T}" y2="${H - B}" stroke="#eee"/>`);
    o.push(`<text x="${x}" y="${H - B + 16}" text-anchor="middle">${fmt(t)}</text>`);
  }
  o.push(`<rect x="${L}" y="${T}" width="${W - L - R}" height="${H - T - B}" fill="none" stroke="#444"/>`);
  o.push(`<text x="${(L + W - R) / 2}" y="${H - B + 34}" text-anchor="middle">services (N, log scale)</text>`);
  o.push(`<text transform="translate(16 ${(T + H - B) / 2}) rotate(-90)" text-anchor="middle">${esc(c.yLabel)}${c.logY ? " (log scale)" : ""}</text>`);
  c.series.forEach((s, i) => {
    const p = s.points.filter(([x, y]) => x > 0 && Number.isFinite(y) && (!c.logY || y > 0)).sort((a, b) => a[0] - b[0]);
    if (p.length) {
      o.push(`<polyline fill="none" stroke="${s.color}" stroke-width="2" points="${p.map(([x, y]) => `${px(x).toFixed(1)},${py(y).toFixed(1)}`).join(" ")}"/>`);
      for (const [x, y] of p) o.push(`<circle cx="${px(x).toFixed(1)}" cy="${py(y).toFixed(1)}" r="3.5" fill="${s.color}"><title>${esc(s.name)} N=${x}: ${y}</title></circle>`);
    }
    const ly = T + 10 + i * 20;
    o.push(`<line x1="${W - R + 12}" x2="${W - R + 34}" y1="${ly}" y2="${ly}" stroke="${s.color}" stroke-width="3"/>`);
    o.push(`<text x="${W - R + 40}" y="${ly}" dominant-baseline="middle">${esc(s.name)}${p.length ? "" : " (n/a)"}</text>`);
  });
  if (c.note) o.push(`<text x="${L}" y="${H - 8}" font-size="10" fill="#555">${esc(c.note)}</text>`);
  o.push("</svg>");
  return o.join("\n") + "\n";
}
