import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import { FACES_MISSING, facesDir } from '@facegate/config';
import { Stack, call } from '@facegate/testing';
import { Ajv2020 } from 'ajv/dist/2020.js';

const faces = facesDir();
const stack = new Stack();
const photo = (path: string): Promise<Buffer> => readFile(join(faces!, path));

describe(
  'OpenAPI document against the running stack',
  { skip: faces ? false : FACES_MISSING, timeout: 300_000 },
  () => {
    let spec: any;

    before(async () => {
      await stack.start({ workers: 1 });
      spec = (await call(stack, 'GET', '/openapi.json')).json;
    });

    after(async () => {
      await stack.stopAll();
    });

    test('document is OpenAPI 3.1 and Swagger UI is served', async () => {
      const docs = await fetch(`${stack.url}/docs/`);
      const bundle = await fetch(`${stack.url}/docs/swagger-ui-bundle.js`);

      assert.equal(spec.openapi, '3.1.0');
      assert.ok(Object.keys(spec.paths).length >= 10);
      assert.equal(docs.status, 200);
      assert.match(await docs.text(), /swagger-ui/);
      assert.equal(bundle.status, 200);
    });

    test('every documented route answers with a body that validates', async () => {
      const ajv = new Ajv2020({ strict: false, validateFormats: false });
      const visitor = (
        await call(stack, 'POST', '/api/v1/visitors', { json: { name: 'Spec Walker' } })
      ).json;
      const enrolled = (
        await call(stack, 'POST', `/api/v1/visitors/${visitor.id}/faces`, {
          image: await photo('lfw/Aaron_Peirsol/Aaron_Peirsol_0001.jpg'),
        })
      ).json;
      const image = await photo('lfw/Aaron_Peirsol/Aaron_Peirsol_0002.jpg');
      const operations = Object.entries(spec.paths as Record<string, Record<string, any>>).flatMap(
        ([path, methods]) =>
          Object.entries(methods).map(([method, operation]) => ({ path, method, operation })),
      );
      // Deletions last, so the ids stay valid for the other calls.
      operations.sort(
        (a, b) =>
          Number(a.method === 'delete') - Number(b.method === 'delete') ||
          b.path.length - a.path.length,
      );
      const checked: string[] = [];

      for (const { path, method, operation } of operations) {
        const url = path.replace('{id}', visitor.id).replace('{faceId}', String(enrolled.face.id));
        let body: Parameters<typeof call>[3];
        const content = operation.requestBody?.content ?? {};
        if (path === '/api/v1/verify') body = { form: { image_a: image, image_b: image } };
        else if (content['multipart/form-data']) body = { image };
        else if (content['application/json']) body = { json: { name: `Walker ${method}` } };

        const response = await call(stack, method.toUpperCase(), url, body);
        const documented = operation.responses[String(response.status)];

        assert.ok(
          documented,
          `${method} ${path} answered ${response.status}, which is not documented: ${JSON.stringify(response.json)}`,
        );
        const schema = documented.content?.['application/json']?.schema;
        if (schema) {
          const validate = ajv.compile(schema);
          assert.ok(
            validate(response.json),
            `${method} ${path} ${response.status}: ${ajv.errorsText(validate.errors)}`,
          );
        }
        checked.push(`${method} ${path} ${response.status}`);
      }

      assert.equal(checked.length, operations.length);
      assert.ok(
        checked.some((line) => line.startsWith('post /api/v1/recognize 200')),
        checked.join('\n'),
      );
    });
  },
);
