/** The charts of the analytics page: summary cards, tasks over time and by project, and phase durations. */
import { useMemo } from "preact/hooks";
import { Card } from "../../card";

import { formatDuration } from "../../format";
import { DurationLines } from "./duration_lines";
import { percent } from "./labels";
import { COMPUTING_COLOR, QUEUED_COLOR } from "./palette";
import { ProjectBars } from "./project_bars";
import { Legend, StackedColumns } from "./status_columns";
import { type Loaded, percentile, summarize } from "./summary";
import type { Range } from "./time_buckets";

export function Charts({ loaded, range }: { loaded: Loaded; range: Range }) {
  const stats = useMemo(() => summarize(loaded, range), [loaded, range]);
  if (loaded.done && loaded.tasks.length === 0) {
    return <p class="muted">No tasks were created in this range.</p>;
  }
  return (
    <div class="analytics-charts">
      <div class="cards">
        <Card label="Tasks" value={loaded.tasks.length.toLocaleString()} />
        <Card label="Succeeded" value={percent(stats.succeeded, stats.ended)} />
        <Card label="Active" value={stats.active.toLocaleString()} />
        <Card label="Computing time" value={formatDuration(stats.computingTotal)} />
      </div>

      <h2>Tasks created, by status</h2>
      <figure class="chart" data-testid="chart-over-time">
        <StackedColumns buckets={stats.buckets} range={range} />
        <Legend counts={stats.statusTotals} />
      </figure>

      <h2>Tasks by project</h2>
      <figure class="chart" data-testid="chart-by-project">
        <ProjectBars projects={stats.projects} />
      </figure>

      <h2>Durations</h2>
      <figure class="chart" data-testid="chart-durations">
        <div class="chart-pair">
          <DurationLines
            title="Time in queue"
            color={QUEUED_COLOR}
            buckets={stats.buckets}
            range={range}
            pick={(b) => b.queued}
          />
          <DurationLines
            title="Computing time"
            color={COMPUTING_COLOR}
            buckets={stats.buckets}
            range={range}
            pick={(b) => b.computing}
          />
        </div>
        <p class="muted chart-note">
          Solid line and dots: median; dashed line and rings: 90th percentile, of the tasks created in each interval
          that have left that phase.
        </p>
        <table class="duration-table">
          <thead>
            <tr>
              <th>Phase</th>
              <th class="num">Tasks</th>
              <th class="num">Median</th>
              <th class="num">90th percentile</th>
              <th class="num">Longest</th>
            </tr>
          </thead>
          <tbody>
            {stats.phases.map((p) => (
              <tr key={p.label} data-testid={`duration-${p.label.toLowerCase()}`}>
                <td>{p.label}</td>
                <td class="num">{p.values.length.toLocaleString()}</td>
                <td class="num">{p.values.length ? formatDuration(percentile(p.values, 0.5)) : "–"}</td>
                <td class="num">{p.values.length ? formatDuration(percentile(p.values, 0.9)) : "–"}</td>
                <td class="num">{p.values.length ? formatDuration(p.values[p.values.length - 1]) : "–"}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </figure>
    </div>
  );
}
