/** Tasks by project: one bar per project (the smallest folded into one), stacked by status. */
import { PAD, WIDTH } from "./axes";
import { clip, describeCounts, tasksText } from "./labels";
import { STACK_ORDER, STATUS_COLOR } from "./palette";
import type { Summary } from "./summary";

export function ProjectBars({ projects }: { projects: Summary["projects"] }) {
  const rowH = 24;
  const labelW = 180;
  const countW = 60;
  const height = PAD.top + projects.length * rowH + 4;
  const plotW = WIDTH - labelW - countW - PAD.right;
  const max = Math.max(1, ...projects.map((p) => p.total));
  return (
    <svg class="chart-svg" viewBox={`0 0 ${WIDTH} ${height}`} role="img" aria-label="Tasks by project">
      {projects.map((p, i) => {
        const y = PAD.top + i * rowH;
        let base = 0;
        return (
          <g key={p.name}>
            <title>{`${p.name}: ${tasksText(p.total)}${describeCounts(p.counts)}`}</title>
            <text x={labelW - 8} y={y + rowH / 2} text-anchor="end" dominant-baseline="middle" class="chart-label">
              {clip(p.name, 26)}
            </text>
            {STACK_ORDER.filter((s) => p.counts.has(s)).map((s) => {
              const n = p.counts.get(s)!;
              const rect = (
                <rect
                  key={s}
                  x={labelW + (base / max) * plotW}
                  y={y + 3}
                  width={Math.max(1, (n / max) * plotW)}
                  height={rowH - 6}
                  fill={STATUS_COLOR[s]}
                />
              );
              base += n;
              return rect;
            })}
            <text
              x={labelW + (p.total / max) * plotW + 6}
              y={y + rowH / 2}
              dominant-baseline="middle"
              class="chart-value"
            >
              {p.total.toLocaleString()}
            </text>
          </g>
        );
      })}
    </svg>
  );
}
