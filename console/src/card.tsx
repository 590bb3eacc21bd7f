/** A labelled figure in a row of cards (the analytics summary, a machine group's details). */
export function Card({ label, value }: { label: string; value: string }) {
  return (
    <div class="card">
      <div class="label">{label}</div>
      <div class="value">{value}</div>
    </div>
  );
}
