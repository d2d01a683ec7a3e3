import { PLAIN_DECIMAL } from '@facegate/config';
import { FaceGateError } from '@facegate/errors';
import type { NextFunction, Request, Response } from 'express';
import { z } from 'zod';

/**
 * Returns a number parameter, which arrives as text in a query string or form field and as a
 * number in JSON. Text is read only when it matches `text`, a plain decimal number by
 * default. zod's coercion would also read '0x10' as 16, ' 3 ' as 3 and an empty value as 0.
 */
export function numberParameter<T extends z.ZodType>(schema: T, text: RegExp = PLAIN_DECIMAL) {
  return z.preprocess(
    (value) => (typeof value === 'string' && text.test(value) ? Number(value) : value),
    schema,
  );
}

/**
 * Returns a parameter that picks what to do with a photo of several faces, one of `policies`.
 * 'center', the American spelling, is read as 'centre'.
 */
export function facesPolicy<const T extends readonly [string, ...string[]]>(policies: T) {
  return z.preprocess((value) => (value === 'center' ? 'centre' : value), z.enum(policies));
}

const score = numberParameter(z.number().min(0.05).max(1));

export const detectQuery = z
  .object({
    min_score: score.optional(),
    limit: numberParameter(z.number().int().min(1).max(1000)).optional(),
  })
  .strict();

export const recognizeQuery = detectQuery
  .extend({
    top_k: numberParameter(z.number().int().min(1).max(20)).default(1),
    // Identification thresholds outside this range accept almost every face or none.
    threshold: numberParameter(z.number().min(0.2).max(0.95)).optional(),
  })
  .strict();

export const verifyQuery = z
  .object({
    visitor_id: z.string().uuid().optional(),
    threshold: numberParameter(z.number().min(-1).max(1)).optional(),
  })
  .strict();

export const enrolQuery = z
  .object({
    multiple_faces: facesPolicy(['strict', 'largest', 'centre']).default('strict'),
  })
  .strict();

const metadata = z.record(z.string(), z.unknown());

/**
 * An external id is matched exactly, so spaces around it would make a second visitor of the
 * same person: they are rejected rather than trimmed, as the id is the client's own.
 */
const externalId = z
  .string()
  .min(1)
  .max(200)
  .refine((value) => value.trim() === value, 'must not start or end with white space');

export const newVisitorBody = z
  .object({
    externalId: externalId.nullable().optional(),
    name: z.string().trim().min(1).max(200),
    metadata: metadata.optional(),
  })
  .strict();

export const visitorPatchBody = z
  .object({
    externalId: externalId.nullable().optional(),
    name: z.string().trim().min(1).max(200).optional(),
    metadata: metadata.optional(),
  })
  .strict()
  .refine(
    (patch) => Object.keys(patch).length > 0,
    'at least one of externalId, name, metadata is required',
  );

export const listVisitorsQuery = z
  .object({
    limit: numberParameter(z.number().int().min(1).max(1000)).default(50),
    cursor: z.string().min(1).max(500).optional(),
  })
  .strict();

export const visitorIdParams = z.object({ id: z.string().uuid() });
export const faceIdParams = z.object({
  id: z.string().uuid(),
  // Digits only: '1.0' or '1e0' would also name face 1.
  faceId: numberParameter(
    z.number({ error: 'must be a face id: 1 to 15 digits, nothing else' }).int().min(1),
    /^\d{1,15}$/,
  ),
});

/**
 * Middleware of a route that takes no query parameters: any parameter gets 400
 * INVALID_REQUEST, as unknown parameters do on the routes that take some.
 */
export function noQuery(request: Request, _response: Response, next: NextFunction): void {
  const names = Object.keys(request.query);
  if (names.length === 0) {
    next();
    return;
  }
  const problem = `unknown query parameter(s): ${names.join(', ')}; this route takes none`;
  next(new FaceGateError('INVALID_REQUEST', problem, { details: { problems: [problem] } }));
}

/** Parses `value` or throws INVALID_REQUEST listing every problem (a uuid path parameter that does not parse is NOT_FOUND). */
export function parse<T extends z.ZodType>(schema: T, value: unknown, where: string): z.output<T> {
  const nulPath = findNulCharacter(value);
  if (nulPath !== null) {
    // PostgreSQL text cannot store U+0000, so it would fail later as an internal error.
    const at = nulPath === '' ? where : `${where} '${nulPath}'`;
    throw new FaceGateError('INVALID_REQUEST', `${at} contains a NUL character (U+0000)`);
  }
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  // A value of the wrong type gets that one problem. zod goes on checking a string sent for an
  // array against the array's maximum length, which would add "at most 3 characters".
  const wrongType = new Set(
    result.error.issues
      .filter((issue) => issue.code === 'invalid_type')
      .map((issue) => issue.path.join('.')),
  );
  const issues = result.error.issues.filter(
    (issue) => issue.code === 'invalid_type' || !wrongType.has(issue.path.join('.')),
  );
  const described = issues.map((issue) => {
    const path = issue.path.join('.');
    if (issue.code === 'unrecognized_keys')
      return `unknown ${where} parameter(s): ${issue.keys.join(', ')}`;
    const message = describeIssue(issue, valueAt(value, issue.path), where);
    return path ? `${where} '${path}': ${message}` : `${where}: ${message}`;
  });
  // The branches of a union (a number or a string) can report the same problem twice.
  const problems = [...new Set(described)];
  throw new FaceGateError('INVALID_REQUEST', problems.join('; '), { details: { problems } });
}

/**
 * Adds the parameters sent as non-image fields of a multipart or JSON body to those parsed
 * from the query string, so that `{"image": "...", "top_k": 5}` works as `?top_k=5` does.
 * A field that is not a parameter of the route is a 400, as an unknown query parameter is,
 * and so is a parameter sent in both places.
 */
export function withBodyParameters<T extends z.ZodObject>(
  schema: T,
  query: z.output<T>,
  rawQuery: object,
  fields: Record<string, unknown>,
): z.output<T> {
  const names = Object.keys(fields);
  if (names.length === 0) return query;
  const repeated = names.filter((name) => Object.hasOwn(rawQuery, name));
  if (repeated.length > 0) {
    throw new FaceGateError(
      'INVALID_REQUEST',
      `parameter(s) ${repeated.join(', ')} sent both in the query and in the body; send each once`,
    );
  }
  // Coercion would read true as 1 and [3] as 3: every parameter is a string or a number.
  const malformed = names.filter((name) => !['string', 'number'].includes(typeof fields[name]));
  if (malformed.length > 0) {
    const problems = malformed.map(
      (name) => `body '${name}': expected a string or a number, got ${shown(fields[name])}`,
    );
    throw new FaceGateError('INVALID_REQUEST', problems.join('; '), { details: { problems } });
  }
  const body = parse(schema.partial(), fields, 'body') as Record<string, unknown>;
  // Only the fields sent replace query values: a default of the schema must not.
  const merged: Record<string, unknown> = { ...query };
  for (const name of names) merged[name] = body[name];
  return merged as z.output<T>;
}

/** Finds the value as sent at an issue's path (before coercion), or undefined. */
function valueAt(value: unknown, path: readonly PropertyKey[]): unknown {
  let current = value;
  for (const key of path) {
    if (typeof current !== 'object' || current === null) return undefined;
    current = (current as Record<PropertyKey, unknown>)[key];
  }
  return current;
}

/** Shows a value as sent, shortened: a client may echo anything. */
function shown(value: unknown): string {
  if (value === undefined) return 'nothing';
  let text: string;
  try {
    text = typeof value === 'string' ? `'${value}'` : JSON.stringify(value);
  } catch {
    // JSON.stringify recurses, and a value nested a few thousand levels overflows the stack.
    return Array.isArray(value) ? 'a deeply nested array' : 'a deeply nested object';
  }
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}

/**
 * Words one problem for the client in terms of what it sent, where zod's own message
 * would name its internals ("expected number, received NaN").
 */
function describeIssue(issue: z.core.$ZodIssue, sent: unknown, where: string): string {
  if (sent === undefined && issue.code === 'invalid_type') return 'is required';
  // The query parser turns a repeated parameter into an array.
  if (where === 'query' && Array.isArray(sent) && issue.code === 'invalid_type')
    return 'is given more than once';
  switch (issue.code) {
    case 'invalid_type':
      if (issue.expected === 'object') return `must be a JSON object, got ${shown(sent)}`;
      if (issue.expected === 'int') return `must be an integer, got ${shown(sent)}`;
      // Text reaches here only when numberParameter (or a schema's own reading) refused it.
      if (issue.expected === 'number' && typeof sent === 'string') {
        const own = !issue.message.startsWith('Invalid input');
        return `${own ? issue.message : 'must be a plain decimal number'}, got ${shown(sent)}`;
      }
      return `must be ${issue.expected === 'number' ? 'a number' : `of type ${issue.expected}`}, got ${shown(sent)}`;
    case 'too_big':
      if (issue.origin === 'string')
        return `must be at most ${String(issue.maximum)} characters long`;
      if (issue.origin === 'array')
        return `must list at most ${String(issue.maximum)} items, got ${shown(sent)}`;
      return `must be ${issue.inclusive === false ? 'below' : 'at most'} ${String(issue.maximum)}, got ${shown(sent)}`;
    case 'too_small':
      if (issue.origin === 'string')
        return issue.minimum === 1
          ? 'must not be empty'
          : `must be at least ${String(issue.minimum)} characters long`;
      if (issue.origin === 'array')
        return `must list at least ${String(issue.minimum)} items, got ${shown(sent)}`;
      return `must be ${issue.inclusive === false ? 'above' : 'at least'} ${String(issue.minimum)}, got ${shown(sent)}`;
    case 'invalid_format':
      // A pattern's own message describes what it accepts, while zod's message shows the pattern.
      if (issue.format === 'regex' && !issue.message.startsWith('Invalid'))
        return `${issue.message}, got ${shown(sent)}`;
      return `must be a valid ${issue.format}, got ${shown(sent)}`;
    case 'invalid_value': {
      const allowed = issue.values.map((value) => shown(value)).join(', ');
      if (sent === undefined) return `is required: one of ${allowed}`;
      return `must be one of ${allowed}, got ${shown(sent)}`;
    }
    default:
      return issue.message;
  }
}

/** Returns the path of the first string (key or value) containing U+0000, or null. */
function findNulCharacter(value: unknown, path = '', depth = 0): string | null {
  if (typeof value === 'string') return value.includes('\u0000') ? path : null;
  if (typeof value !== 'object' || value === null || depth > 32) return null;
  for (const [key, item] of Object.entries(value)) {
    const itemPath = path === '' ? key : `${path}.${key}`;
    if (key.includes('\u0000')) return itemPath;
    const found = findNulCharacter(item, itemPath, depth + 1);
    if (found !== null) return found;
  }
  return null;
}
