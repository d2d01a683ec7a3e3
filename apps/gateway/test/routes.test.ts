import assert from 'node:assert/strict';
import { test } from 'node:test';

import { Registry } from 'prom-client';

import { FaceGateError } from '@facegate/errors';

import { createApp } from '../src/app.js';
import { ROUTES, buildOpenApi } from '../src/openapi.js';
import { noQuery } from '../src/schemas.js';

interface ExpressLayer {
  route?: {
    path: string;
    methods: Record<string, boolean>;
    stack: { name: string }[];
  };
}

/** Lists method and path of every route registered on the Express app, in OpenAPI path syntax. */
function expressRoutes(): string[] {
  return expressLayers().flatMap(({ route }) =>
    route
      ? Object.keys(route.methods).map(
          (method) => `${method} ${route.path.replace(/:(\w+)/g, '{$1}')}`,
        )
      : [],
  );
}

/** Returns the route layers of the Express app. */
function expressLayers(): ExpressLayer[] {
  // The routes are only registered here, never called, so the dependencies
  // are empty placeholders; a real registry is needed because collectors attach to it.
  const app = createApp({
    config: {} as never,
    db: {} as never,
    redis: {} as never,
    keys: {} as never,
    dispatcher: {} as never,
    logger: {} as never,
    queues: {} as never,
    registry: new Registry(),
    keyRing: {} as never,
    rateLimiter: null,
  });
  return (app as unknown as { router: { stack: ExpressLayer[] } }).router.stack;
}

test('every REST route is documented', () => {
  const documented = ROUTES.map((route) => `${route.method} ${route.path}`);
  const registered = expressRoutes().filter(
    (route) => route.includes('/api/') || route.endsWith('/health') || route.endsWith('/ready'),
  );

  assert.ok(registered.length >= 14, registered.join(', '));
  for (const route of registered)
    assert.ok(documented.includes(route), `${route} is missing from the OpenAPI routes`);
});

test('query parameters come from the validation schemas', () => {
  const spec = buildOpenApi('test') as any;

  const recognize = spec.paths['/api/v1/recognize'].post;
  const names = recognize.parameters.map((parameter: { name: string }) => parameter.name).sort();

  assert.deepEqual(names, ['limit', 'min_score', 'threshold', 'top_k']);
  const threshold = recognize.parameters.find(
    (parameter: { name: string }) => parameter.name === 'threshold',
  );
  assert.equal(threshold.schema.minimum, 0.2);
  assert.equal(threshold.schema.maximum, 0.95);
});

test('a route without query parameters rejects any', () => {
  for (const { route } of expressLayers()) {
    if (!route?.path.startsWith('/api/v1/')) continue;
    for (const method of Object.keys(route.methods)) {
      const documentedPath: string = route.path.replace(/:(\w+)/g, '{$1}');
      const spec = ROUTES.find((entry) => entry.method === method && entry.path === documentedPath);
      const checked = route.stack.some((layer) => layer.name === 'noQuery');
      assert.equal(checked, spec?.query === undefined, `${method} ${documentedPath}`);
    }
  }
});

test('noQuery passes an empty query and names the parameters of any other', () => {
  const outcomes: unknown[] = [];
  const next = (error?: unknown) => outcomes.push(error);

  noQuery({ query: {} } as never, {} as never, next);
  noQuery({ query: { dry_run: '1', foo: 'x' } } as never, {} as never, next);

  assert.equal(outcomes[0], undefined);
  const error = outcomes[1];
  assert.ok(error instanceof FaceGateError);
  assert.equal(error.code, 'INVALID_REQUEST');
  assert.equal(error.message, 'unknown query parameter(s): dry_run, foo; this route takes none');
});
