/** Tasks created over time: one column per bucket, its tasks stacked by status, and the legend of the colours. */
import { statusName } from "../../format";
import type { TaskStatus } from "../../gen/simplane/v1/task_pb";
import { countTicks, HEIGHT, PAD, WIDTH, XAxis, YAxis } from "./axes";
import { bucketLabel, describeCounts, tasksText } from "./labels";
import { STACK_ORDER, STATUS_COLOR } from "./palette";
import type { Bucket } from "./summary";
import type { Range } from "./time_buckets";

export function StackedColumns({ buckets, range }: { buckets: Bucket[]; range: Range }) {
  const max = Math.max(1, ...buckets.map((b) => b.total));
  const ticks = countTicks(max);
  const top = ticks[ticks.length - 1];
  const plotW = WIDTH - PAD.left - PAD.right;
  const plotH = HEIGHT - PAD.top - PAD.bottom;
  const slot = plotW / Math.max(1, buckets.length);
  const barW = Math.max(1, slot * 0.8);
  const y = (v: number) => PAD.top + plotH - (v / top) * plotH;
  return (
    <svg class="chart-svg" viewBox={`0 0 ${WIDTH} ${HEIGHT}`} role="img" aria-label="Tasks created over time">
      <YAxis ticks={ticks} y={y} label={(v) => v.toLocaleString()} right={WIDTH - PAD.right} />
      {buckets.map((b, i) => {
        const x = PAD.left + i * slot + (slot - barW) / 2;
        let base = 0;
        return (
          <g key={b.start}>
            <title>{`${bucketLabel(b, range)}: ${tasksText(b.total)}${describeCounts(b.counts)}`}</title>
            <rect x={x} y={PAD.top} width={barW} height={plotH} fill="transparent" />
            {STACK_ORDER.filter((s) => b.counts.has(s)).map((s) => {
              const n = b.counts.get(s)!;
              const rect = (
                <rect
                  key={s}
                  x={x}
                  y={y(base + n)}
                  width={barW}
                  height={y(base) - y(base + n)}
                  fill={STATUS_COLOR[s]}
                />
              );
              base += n;
              return rect;
            })}
          </g>
        );
      })}
      <XAxis buckets={buckets} range={range} slot={slot} />
    </svg>
  );
}

export function Legend({ counts }: { counts: Map<TaskStatus, number> }) {
  return (
    <figcaption class="chart-legend">
      {STACK_ORDER.filter((s) => counts.has(s)).map((s) => (
        <span key={s} class="chart-legend-item" data-testid={`legend-${statusName(s).toLowerCase()}`}>
          <span class="chart-swatch" style={{ background: STATUS_COLOR[s] }} />
          {statusName(s)} {(counts.get(s) ?? 0).toLocaleString()}
        </span>
      ))}
    </figcaption>
  );
}
