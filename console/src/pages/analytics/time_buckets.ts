/** The ranges the analytics page offers, and their buckets: whole intervals of local time, one chart column each. */

const HOUR = 3600_000;
export const DAY = 24 * HOUR;

export interface Range {
  key: string;
  label: string;
  span: number;
  bucket: number;
}

export const RANGES: Range[] = [
  { key: "1h", label: "Last hour", span: HOUR, bucket: 5 * 60_000 },
  { key: "24h", label: "Last 24 hours", span: DAY, bucket: HOUR },
  { key: "7d", label: "Last 7 days", span: 7 * DAY, bucket: 6 * HOUR },
  { key: "30d", label: "Last 30 days", span: 30 * DAY, bucket: DAY },
];

/** The start of the local-time bucket holding `ms`: whole hours, or local midnight for day buckets. */
export function alignToBucket(ms: number, bucket: number): number {
  if (bucket >= DAY) {
    const d = new Date(ms);
    d.setHours(0, 0, 0, 0);
    return d.getTime();
  }
  const offset = new Date(ms).getTimezoneOffset() * 60_000;
  return Math.floor((ms - offset) / bucket) * bucket + offset;
}

/** The next bucket's start; day buckets follow the calendar so daylight-saving days stay aligned. */
export function nextBucket(start: number, bucket: number): number {
  if (bucket < DAY) return start + bucket;
  const d = new Date(start);
  d.setDate(d.getDate() + bucket / DAY);
  return d.getTime();
}

/** The index of the bucket holding `ms` (buckets sorted by start), or -1 if it is before the first. */
export function bucketIndex(buckets: { start: number }[], ms: number): number {
  let lo = 0;
  let hi = buckets.length - 1;
  if (hi < 0 || ms < buckets[0].start) return -1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (buckets[mid].start <= ms) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}
