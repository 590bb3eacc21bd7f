/** The frame of the SVG charts: their size and padding, and the axes with their ticks. */
import { tickTime } from "./labels";
import type { Bucket } from "./summary";
import type { Range } from "./time_buckets";

export const WIDTH = 760;
export const HEIGHT = 240;
export const PAD = { left: 52, right: 12, top: 12, bottom: 30 };

export function YAxis(props: {
  ticks: number[];
  y: (v: number) => number;
  label: (v: number) => string;
  right: number;
}) {
  const { ticks, y, label } = props;
  return (
    <g class="chart-axis">
      {ticks.map((t) => (
        <g key={t}>
          <line x1={PAD.left} x2={props.right} y1={y(t)} y2={y(t)} class="chart-grid" />
          <text x={PAD.left - 6} y={y(t)} text-anchor="end" dominant-baseline="middle" class="chart-label">
            {label(t)}
          </text>
        </g>
      ))}
    </g>
  );
}

export function XAxis(props: { buckets: Bucket[]; range: Range; slot: number; maxLabels?: number }) {
  const { buckets, range, slot, maxLabels = 8 } = props;
  const every = Math.max(1, Math.ceil(buckets.length / maxLabels));
  return (
    <g class="chart-axis">
      {buckets.map((b, i) =>
        i % every === 0 ? (
          <text
            key={b.start}
            x={PAD.left + i * slot + slot / 2}
            y={HEIGHT - PAD.bottom + 16}
            text-anchor="middle"
            class="chart-label"
          >
            {tickTime(b.start, range)}
          </text>
        ) : null,
      )}
    </g>
  );
}

/** Evenly spaced ticks from 0 to a round number at or above `max`, with steps of 1, 2 or 5 times a power of 10. */
export function countTicks(max: number): number[] {
  const rough = max / 4;
  const power = 10 ** Math.floor(Math.log10(rough));
  const step = Math.max(1, [1, 2, 5, 10].map((m) => m * power).find((s) => s >= rough) ?? power * 10);
  const ticks: number[] = [];
  for (let t = 0; t <= max + step - 1e-9 && ticks.length < 12; t += step) {
    ticks.push(t);
    if (t >= max) break;
  }
  return ticks;
}

/** Steps that read well as durations: seconds, minutes, hours, days. */
const DURATION_STEPS = [
  0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 172800,
  432000, 864000,
];

export function durationTicks(max: number): number[] {
  const step = DURATION_STEPS.find((s) => s >= max / 4) ?? Math.ceil(max / 4 / 86400) * 86400;
  const ticks: number[] = [];
  for (let t = 0; ticks.length < 12; t += step) {
    ticks.push(t);
    if (t >= max) break;
  }
  return ticks;
}
