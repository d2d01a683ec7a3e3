import assert from 'node:assert/strict';
import { test } from 'node:test';

import { Registry } from 'prom-client';

import { createApp } from '../src/app.js';
import { ROUTES, buildOpenApi } from '../src/openapi.js';

/** Lists method and path of every route registered on the Express app, in OpenAPI path syntax. */
function expressRoutes(): string[] {
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
  const stack = (
    app as unknown as {
      router: { stack: { route?: { path: string; methods: Record<string, boolean> } }[] };
    }
  ).router.stack;
  return stack.flatMap((layer) =>
    layer.route
      ? Object.keys(layer.route.methods).map(
          (method) => `${method} ${layer.route!.path.replace(/:(\w+)/g, '{$1}')}`,
        )
      : [],
  );
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
