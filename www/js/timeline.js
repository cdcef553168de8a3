// Bars on a time axis, drawn as SVG: the Combined panel and the Concurrency lab use it.
//
// The drawing uses the <svg>'s real width in CSS pixels, so text stays readable on a
// phone instead of shrinking with a scaled viewBox. When the width changes the chart
// is drawn again from the data it was given.

import { svgEl } from './dom.js';

/**
 * @typedef {object} Segment   one stretch of a bar
 * @property {number} from     ms since the start of the run
 * @property {number} to       ms since the start of the run
 * @property {string} kind     picks the colour: wait, busy, server, db, external, total, failed
 *
 * @typedef {object} Row       one bar, made of one or more segments
 * @property {Segment[]} segments
 * @property {string} [label]  drawn left of the bar (needs options.labelWidth)
 * @property {string} [value]  drawn right of the bar, e.g. "305 ms" (needs options.valueWidth)
 * @property {string} [title]  the tooltip
 *
 * @typedef {object} Options
 * @property {number} maxMs         the right end of the axis; charts that share it compare
 * @property {number} [rowHeight]   px per bar, gap included
 * @property {number} [labelWidth]  px kept on the left for labels
 * @property {number} [valueWidth]  px kept on the right for values
 */

/** What each chart was last drawn from, to draw it again at a new width. */
const charts = new WeakMap();

// Redraw in the next frame, not inside the observer's callback: changing the
// chart's height there would make the observer report it again in the same frame.
const observer = new ResizeObserver((entries) => {
  for (const entry of entries) {
    const svg = entry.target;
    const chart = charts.get(svg);
    if (chart && Math.round(entry.contentRect.width) !== chart.width) {
      requestAnimationFrame(() => render(svg));
    }
  }
});

/**
 * Draws `rows` into `svg`, replacing what was there.
 * @param {SVGSVGElement} svg
 * @param {Row[]} rows
 * @param {Options} options
 */
export function drawTimeline(svg, rows, options) {
  charts.set(svg, { rows, options, width: 0 });
  observer.observe(svg);
  render(svg);
}

/** Removes the bars and leaves an empty chart. */
export function clearTimeline(svg) {
  charts.delete(svg);
  observer.unobserve(svg);
  svg.replaceChildren();
  svg.removeAttribute('viewBox');
  svg.setAttribute('height', '0');
}

function render(svg) {
  const chart = charts.get(svg);
  if (!chart) return;
  const { rows, options } = chart;
  const { maxMs, rowHeight = 22, labelWidth = 0, valueWidth = 0 } = options;

  const width = Math.max(Math.round(svg.getBoundingClientRect().width), 240);
  chart.width = width;
  const top = 6;
  const axisHeight = 26;
  const left = labelWidth ? labelWidth + 8 : 4;
  const right = width - Math.max(valueWidth, 28);
  const height = top + rows.length * rowHeight + axisHeight;
  const x = (ms) => left + (Math.max(0, ms) / maxMs) * (right - left);

  svg.setAttribute('viewBox', `0 0 ${width} ${height}`);
  svg.setAttribute('height', String(height));
  svg.replaceChildren();

  // The axis first, so the bars are drawn over its grid lines.
  const axisY = top + rows.length * rowHeight + 4;
  const step = niceStep(maxMs / Math.max(2, Math.floor((right - left) / 90)));
  for (let ms = 0; ms <= maxMs + step * 1e-9; ms += step) {
    svg.append(
      svgEl('line', { class: 'grid', x1: x(ms), x2: x(ms), y1: top, y2: axisY }),
      svgEl('text', { class: 'tick', x: x(ms), y: axisY + 15, 'text-anchor': ms === 0 ? 'start' : 'middle' },
        tickLabel(ms)),
    );
  }
  svg.append(svgEl('line', { class: 'axis', x1: left, x2: right, y1: axisY, y2: axisY }));

  // A gap between bars while they are tall enough to spare one.
  const gap = rowHeight >= 10 ? 3 : rowHeight >= 6 ? 2 : rowHeight >= 4 ? 1 : 0;
  rows.forEach((row, i) => {
    const y = top + i * rowHeight;
    const bar = svgEl('g', { class: 'bar' });
    if (row.title) bar.append(svgEl('title', {}, row.title));
    for (const segment of row.segments) {
      const x0 = x(segment.from);
      bar.append(svgEl('rect', {
        class: `seg seg-${segment.kind}`,
        x: x0,
        y,
        // At least a pixel wide, so a very short request is still seen.
        width: Math.max(1, x(segment.to) - x0),
        height: rowHeight - gap,
        rx: rowHeight >= 6 ? 2 : 0,
      }));
    }
    const middle = y + (rowHeight - gap) / 2;
    if (row.label && labelWidth) {
      bar.append(svgEl('text', { class: 'label', x: 0, y: middle, 'dominant-baseline': 'central' }, row.label));
    }
    if (row.value && valueWidth) {
      const end = Math.max(...row.segments.map((s) => x(s.to)), left);
      bar.append(svgEl('text', { class: 'value', x: end + 6, y: middle, 'dominant-baseline': 'central' }, row.value));
    }
    svg.append(bar);
  });
}

/** A round step for axis ticks: 1, 2 or 5 times a power of ten, at least `raw`. */
function niceStep(raw) {
  if (!(raw > 0)) return 1;
  const power = 10 ** Math.floor(Math.log10(raw));
  for (const m of [1, 2, 5]) {
    if (m * power >= raw) return m * power;
  }
  return 10 * power;
}

function tickLabel(ms) {
  if (ms === 0) return '0';
  if (ms >= 1000) return `${+(ms / 1000).toFixed(2)} s`;
  return `${+ms.toFixed(1)} ms`;
}

/** The most intervals [from, to) that overlap at any moment. */
export function peakInFlight(intervals) {
  // At equal times an end comes before a start: a connection freed can be reused at once.
  const events = intervals.flatMap(([from, to]) => [[from, 1], [to, -1]])
    .sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  let now = 0;
  let peak = 0;
  for (const [, change] of events) {
    now += change;
    peak = Math.max(peak, now);
  }
  return peak;
}
