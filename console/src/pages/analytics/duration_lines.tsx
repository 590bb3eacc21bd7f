/** The time tasks spent in a phase, per bucket: the median and the 90th percentile as two lines. */
import { formatDuration } from "../../format";
import { durationTicks, HEIGHT, PAD, WIDTH, XAxis, YAxis } from "./axes";
import { bucketLabel, formatTick, tasksText } from "./labels";
import { type Bucket, percentile } from "./summary";
import type { Range } from "./time_buckets";

export function DurationLines(props: {
  title: string;
  color: string;
  buckets: Bucket[];
  range: Range;
  pick: (b: Bucket) => number[];
}) {
  const { buckets, range } = props;
  const width = WIDTH / 2 + 40;
  const plotW = width - PAD.left - PAD.right;
  const plotH = HEIGHT - PAD.top - PAD.bottom - 18;
  const top0 = PAD.top + 18;
  const slot = plotW / Math.max(1, buckets.length);
  const points = buckets
    .map((b, i) => ({ i, b, values: props.pick(b) }))
    .filter((p) => p.values.length > 0)
    .map((p) => ({ ...p, median: percentile(p.values, 0.5), p90: percentile(p.values, 0.9) }));
  const ticks = durationTicks(Math.max(0.001, ...points.map((p) => p.p90)));
  const top = ticks[ticks.length - 1];
  const x = (i: number) => PAD.left + i * slot + slot / 2;
  const y = (v: number) => top0 + plotH - (v / top) * plotH;
  const line = (key: "median" | "p90") => points.map((p) => `${x(p.i).toFixed(1)},${y(p[key]).toFixed(1)}`).join(" ");
  return (
    <svg class="chart-svg" viewBox={`0 0 ${width} ${HEIGHT}`} role="img" aria-label={props.title}>
      <text x={PAD.left} y={PAD.top + 6} class="chart-title">
        {props.title}
      </text>
      <YAxis ticks={ticks} y={y} label={formatTick} right={width - PAD.right} />
      {points.length === 0 ? (
        <text x={PAD.left + plotW / 2} y={top0 + plotH / 2} text-anchor="middle" class="chart-label">
          No tasks have finished this phase yet
        </text>
      ) : (
        <g>
          <polyline points={line("p90")} fill="none" stroke={props.color} stroke-width={1.5} stroke-dasharray="5 4" />
          <polyline points={line("median")} fill="none" stroke={props.color} stroke-width={2} />
          {points.map((p) => (
            <g key={p.i}>
              <title>
                {`${bucketLabel(p.b, range)}: median ${formatDuration(p.median)}, 90th percentile ` +
                  `${formatDuration(p.p90)} (${tasksText(p.values.length)})`}
              </title>
              <circle cx={x(p.i)} cy={y(p.median)} r={3} fill={props.color} />
              <circle cx={x(p.i)} cy={y(p.p90)} r={2.5} fill="#fff" stroke={props.color} stroke-width={1.5} />
              <rect x={x(p.i) - slot / 2} y={top0} width={slot} height={plotH} fill="transparent" />
            </g>
          ))}
        </g>
      )}
      <XAxis buckets={buckets} range={range} slot={slot} maxLabels={4} />
    </svg>
  );
}
