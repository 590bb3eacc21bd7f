/**
 * The launch form's fields: their names, the problems found in them (by the form's own checks, or named by the
 * server in an INVALID_ARGUMENT's field violations), and the row that shows a field with its problem or hint.
 */
import type { ComponentChildren } from "preact";

import { fieldViolations } from "../../api";

/** The form's fields, named as in SubmitTaskRequest, so that a field the server names is found by its name. */
const FIELDS = ["command", "name", "project", "machine_group", "cpus", "time_to_live", "env", "inputs"] as const;

export type Field = (typeof FIELDS)[number];
export type FieldErrors = Partial<Record<Field, string>>;

export function Row(props: {
  label: string;
  field: Field;
  errors: FieldErrors;
  hint?: string;
  children: ComponentChildren;
}) {
  const problem = props.errors[props.field];
  return (
    <div class={`form-row${problem ? " invalid" : ""}`} data-field={props.field}>
      <label>{props.label}</label>
      <div class="form-control">
        {props.children}
        {problem ? (
          <div class="error field-error" data-testid={`launch-error-${props.field}`}>
            {problem}
          </div>
        ) : (
          props.hint && <div class="muted hint">{props.hint}</div>
        )}
      </div>
    </div>
  );
}

/** Runs one field's parser, recording its problem under the field instead of throwing. */
export function check<T>(problems: FieldErrors, field: Field, parse: () => T): T {
  try {
    return parse();
  } catch (e) {
    problems[field] = e instanceof Error ? e.message : String(e);
    return undefined as T;
  }
}

/**
 * The problems the server named for the form's fields: each field violation of an INVALID_ARGUMENT goes under
 * the form field its request field path starts with ("command[3]" under command).
 */
export function serverFieldErrors(e: unknown): FieldErrors {
  const problems: FieldErrors = {};
  for (const { field, description } of fieldViolations(e)) {
    const formField = FIELDS.find((f) => f === field.split(/[.[]/, 1)[0]);
    if (formField && !problems[formField]) problems[formField] = description;
  }
  return problems;
}
