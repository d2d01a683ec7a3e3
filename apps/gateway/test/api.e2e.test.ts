import assert from 'node:assert/strict';
import http from 'node:http';
import { connect } from 'node:net';
import { randomUUID } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { after, before, describe, test } from 'node:test';

import { FACES_MISSING, facesDir } from '@facegate/config';

import { createDatabase } from '@facegate/db';
import { Stack, TEST_DATABASE_URL, call } from '@facegate/testing';

const faces = facesDir();
const stack = new Stack();
const photo = (path: string): Promise<Buffer> => readFile(join(faces!, path));

describe(
  'REST API on the running stack',
  { skip: faces ? false : FACES_MISSING, timeout: 300_000 },
  () => {
    before(async () => {
      await stack.start({ workers: 1 });
    });

    after(async () => {
      await stack.stopAll();
    });

    test('health and readiness report every dependency', async () => {
      const health = await call(stack, 'GET', '/health');
      const ready = await call(stack, 'GET', '/ready');

      assert.equal(health.status, 200);
      assert.equal(ready.status, 200);
      // Without API keys the service runs open and reports it.
      assert.equal(ready.json.auth, 'open');
      assert.match(ready.json.checks.auth.warning, /no API keys are configured/);
      assert.match(stack.logs.get('gateway')!.join(''), /NO API KEYS ARE CONFIGURED/);
      for (const check of ['postgres', 'redis', 'inferenceWorkers', 'matcher'])
        assert.equal(ready.json.checks[check].ok, true, check);
    });

    test('detect gives the same faces for multipart, raw and base64 JSON', async () => {
      const image = await photo('edge/multi_face/couple.jpg');

      const multipart = await call(stack, 'POST', '/api/v1/detect', { image });
      const raw = await call(stack, 'POST', '/api/v1/detect', { raw: image, type: 'image/jpeg' });
      const json = await call(stack, 'POST', '/api/v1/detect', {
        json: { image: image.toString('base64') },
      });

      assert.equal(multipart.status, 200, JSON.stringify(multipart.json));
      assert.deepEqual(multipart.json.image, { width: 2280, height: 1588 });
      assert.equal(multipart.json.faces.length, 2);
      assert.deepEqual(raw.json.faces, multipart.json.faces);
      assert.deepEqual(json.json.faces, multipart.json.faces);
      assert.deepEqual(Object.keys(multipart.json.faces[0]).sort(), ['box', 'landmarks', 'score']);
    });

    test('detect honours min_score and limit', async () => {
      const image = await photo('edge/multi_face/solvay.jpg');

      const limited = await call(stack, 'POST', '/api/v1/detect?limit=3&min_score=0.8', { image });

      assert.equal(limited.status, 200);
      assert.equal(limited.json.faces.length, 3);
      for (const face of limited.json.faces) assert.ok(face.score >= 0.8);
    });

    test('detect takes parameters from the body', async () => {
      const image = await photo('edge/multi_face/solvay.jpg');

      const json = await call(stack, 'POST', '/api/v1/detect', {
        json: { image: image.toString('base64'), limit: 3, min_score: 0.8 },
      });
      const form = await call(stack, 'POST', '/api/v1/detect', { form: { image, limit: '2' } });
      const repeatedForm = new FormData();
      repeatedForm.append('image', new Blob([image]), 'image.jpg');
      repeatedForm.append('limit', '2');
      repeatedForm.append('limit', '3');
      const repeated = await fetch(`${stack.url}/api/v1/detect`, {
        method: 'POST',
        body: repeatedForm,
      });
      const typo = await call(stack, 'POST', '/api/v1/detect', {
        json: { image: image.toString('base64'), limt: 3 },
      });
      const twice = await call(stack, 'POST', '/api/v1/detect?limit=3', {
        json: { image: image.toString('base64'), limit: 3 },
      });
      const outOfRange = await call(stack, 'POST', '/api/v1/recognize', {
        json: { image: image.toString('base64'), top_k: 100 },
      });
      const notNumbers = await Promise.all(
        [true, [3], { value: 3 }, null].map((value) =>
          call(stack, 'POST', '/api/v1/detect', {
            json: { image: image.toString('base64'), limit: value },
          }),
        ),
      );

      assert.equal(json.status, 200, JSON.stringify(json.json));
      assert.equal(json.json.faces.length, 3);
      for (const face of json.json.faces) assert.ok(face.score >= 0.8);
      assert.equal(form.status, 200, JSON.stringify(form.json));
      assert.equal(form.json.faces.length, 2);
      assert.equal(repeated.status, 400);
      assert.match(
        ((await repeated.json()) as any).error.message,
        /form field 'limit' is given more than once/,
      );
      assert.equal(typo.status, 400);
      assert.match(typo.json.error.message, /unknown body parameter\(s\): limt/);
      assert.equal(twice.status, 400);
      assert.match(twice.json.error.message, /limit sent both in the query and in the body/);
      assert.deepEqual(twice.json.error.details.problems, [twice.json.error.message]);
      assert.equal(outOfRange.status, 400);
      assert.match(outOfRange.json.error.message, /body 'top_k'/);
      for (const response of notNumbers) {
        assert.equal(response.status, 400, JSON.stringify(response.json));
        assert.match(response.json.error.message, /body 'limit': expected a string or a number/);
      }
    });

    const BAD_INPUTS: [string, () => Promise<Parameters<typeof call>[3]>, number, string][] = [
      [
        'text body labelled as JPEG',
        async () => ({ raw: Buffer.from('not an image at all'), type: 'image/jpeg' }),
        415,
        'IMAGE_UNSUPPORTED_FORMAT',
      ],
      [
        'empty body',
        async () => ({ raw: Buffer.alloc(0), type: 'image/jpeg' }),
        400,
        'IMAGE_EMPTY',
      ],
      [
        'wrong content type',
        async () => ({ raw: Buffer.from('hello'), type: 'text/plain' }),
        415,
        'UNSUPPORTED_MEDIA_TYPE',
      ],
      [
        'oversize upload',
        async () => ({ raw: Buffer.alloc(11 * 1024 * 1024, 0xff), type: 'image/jpeg' }),
        413,
        'PAYLOAD_TOO_LARGE',
      ],
      [
        // Exactly the default MAX_IMAGE_BYTES passes the size check and fails on its contents.
        'multipart image of exactly the limit as no image',
        async () => ({ image: Buffer.alloc(10 * 1024 * 1024, 0xff) }),
        415,
        'IMAGE_UNSUPPORTED_FORMAT',
      ],
      [
        'multipart image one byte over the limit',
        async () => ({ image: Buffer.alloc(10 * 1024 * 1024 + 1, 0xff) }),
        413,
        'PAYLOAD_TOO_LARGE',
      ],
      [
        // One byte over the default MAX_IMAGE_BYTES, so the JSON body itself is within its limit.
        'oversize base64 image',
        async () => ({
          json: { image: Buffer.alloc(10 * 1024 * 1024 + 1, 0xff).toString('base64') },
        }),
        413,
        'PAYLOAD_TOO_LARGE',
      ],
      [
        'HEIC photo',
        async () => ({ image: await photo('edge/odd_format/IMG_2682.heic') }),
        415,
        'IMAGE_UNSUPPORTED_FORMAT',
      ],
      [
        'truncated JPEG',
        async () => ({ image: (await photo('edge/multi_face/couple.jpg')).subarray(0, 300_000) }),
        400,
        'IMAGE_CORRUPT',
      ],
      ['invalid base64', async () => ({ json: { image: '***' } }), 400, 'INVALID_REQUEST'],
      [
        'JSON in UTF-16',
        async () => ({
          raw: Buffer.from(
            JSON.stringify({ image: (await photo('edge/png/32bit.png')).toString('base64') }),
            'utf16le',
          ),
          type: 'application/json; charset=utf-16',
        }),
        415,
        'UNSUPPORTED_MEDIA_TYPE',
      ],
      [
        'a gzip-encoded body',
        async () => ({
          raw: gzipSync(await photo('edge/png/32bit.png')),
          type: 'image/png',
          headers: { 'content-encoding': 'gzip' },
        }),
        415,
        'UNSUPPORTED_MEDIA_TYPE',
      ],
      [
        'missing image field',
        async () => ({ form: { picture: Buffer.from('x') } }),
        400,
        'INVALID_REQUEST',
      ],
      [
        'a multipart body that ends inside the image',
        async () => ({
          raw: Buffer.concat([
            Buffer.from(
              '--cut\r\nContent-Disposition: form-data; name="image"; filename="a.jpg"\r\n' +
                'Content-Type: image/jpeg\r\n\r\n',
            ),
            (await photo('lfw/Aaron_Peirsol/Aaron_Peirsol_0001.jpg')).subarray(0, 2000),
          ]),
          type: 'multipart/form-data; boundary=cut',
        }),
        400,
        'INVALID_REQUEST',
      ],
      [
        'a multipart body that ends inside an unexpected file',
        async () => ({
          raw: Buffer.from(
            '--cut\r\nContent-Disposition: form-data; name="photo"; filename="a.jpg"\r\n\r\nabc',
          ),
          type: 'multipart/form-data; boundary=cut',
        }),
        400,
        'INVALID_REQUEST',
      ],
    ];

    for (const [name, body, status, code] of BAD_INPUTS) {
      test(`detect rejects ${name}`, async () => {
        const response = await call(stack, 'POST', '/api/v1/detect', await body());
        const health = await call(stack, 'GET', '/health');

        assert.equal(response.status, status, JSON.stringify(response.json));
        assert.equal(response.json.error.code, code);
        assert.ok(response.json.error.message.length > 0);
        assert.equal(health.status, 200, 'the gateway is still running');
      });
    }

    test('verify names the image that cannot be decoded', async () => {
      const good = await photo('lfw/Aaron_Peirsol/Aaron_Peirsol_0001.jpg');
      const response = await call(stack, 'POST', '/api/v1/verify', {
        form: { image_a: good, image_b: good.subarray(0, Math.floor(good.length / 2)) },
      });

      assert.equal(response.status, 400, JSON.stringify(response.json));
      assert.equal(response.json.error.code, 'IMAGE_CORRUPT');
      assert.match(response.json.error.message, /^image_b: /);
      assert.equal(response.json.error.details?.input, 'image_b');
    });

    test('verify names an image refused before decoding', async () => {
      const good = await photo('lfw/Aaron_Peirsol/Aaron_Peirsol_0001.jpg');
      const heic = await photo('edge/odd_format/IMG_2682.heic');

      const unsupported = await call(stack, 'POST', '/api/v1/verify', {
        form: { image_a: heic, image_b: good },
      });
      const empty = await call(stack, 'POST', '/api/v1/verify', {
        form: { image_a: good, image_b: Buffer.alloc(0) },
      });

      assert.equal(unsupported.status, 415, JSON.stringify(unsupported.json));
      assert.equal(unsupported.json.error.code, 'IMAGE_UNSUPPORTED_FORMAT');
      assert.equal(unsupported.json.error.details?.input, 'image_a');
      assert.equal(empty.status, 400, JSON.stringify(empty.json));
      assert.equal(empty.json.error.code, 'IMAGE_EMPTY');
      assert.equal(empty.json.error.details?.input, 'image_b');
    });

    test('a very long Content-Type is cut short in the error', async () => {
      const type = `text/${'x'.repeat(4000)}`;
      const response = await call(stack, 'POST', '/api/v1/detect', {
        raw: Buffer.from('hello'),
        type,
      });

      assert.equal(response.status, 415);
      assert.equal(response.json.error.code, 'UNSUPPORTED_MEDIA_TYPE');
      assert.ok(response.json.error.message.length < 200, response.json.error.message);
    });

    test('empty untyped request is IMAGE_EMPTY', async () => {
      const empty = await fetch(`${stack.url}/api/v1/recognize`, { method: 'POST' });
      const emptyVerify = await fetch(`${stack.url}/api/v1/verify`, { method: 'POST' });
      // fetch sends a Uint8Array without a Content-Type.
      const untyped = await fetch(`${stack.url}/api/v1/recognize`, {
        method: 'POST',
        body: new Uint8Array(Buffer.from('hello')),
      });

      const emptyJson = (await empty.json()) as any;
      assert.equal(empty.status, 400, JSON.stringify(emptyJson));
      assert.equal(emptyJson.error.code, 'IMAGE_EMPTY');
      assert.match(emptyJson.error.message, /field 'image'/);
      const emptyVerifyJson = (await emptyVerify.json()) as any;
      assert.equal(emptyVerify.status, 400);
      assert.match(emptyVerifyJson.error.message, /\(image, image_a, image_b\)/);
      assert.equal(untyped.status, 415);
      assert.equal(((await untyped.json()) as any).error.code, 'UNSUPPORTED_MEDIA_TYPE');
    });

    test('untyped chunked body: empty is IMAGE_EMPTY, else 415 on a usable connection', async () => {
      // One keep-alive connection for all three requests.
      const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
      const send = (method: string, path: string, chunks: string[]) =>
        new Promise<{ status: number; body: any; socket: unknown }>((resolve, reject) => {
          const request = http.request(`${stack.url}${path}`, {
            method,
            agent,
            headers: method === 'POST' ? { 'transfer-encoding': 'chunked' } : {},
          });
          request.on('error', reject);
          request.on('response', (response) => {
            let text = '';
            response.setEncoding('utf8');
            response.on('data', (chunk: string) => (text += chunk));
            response.on('end', () =>
              resolve({
                status: response.statusCode!,
                body: JSON.parse(text),
                socket: request.socket,
              }),
            );
          });
          for (const chunk of chunks) request.write(chunk);
          request.end();
        });

      try {
        const empty = await send('POST', '/api/v1/recognize', []);
        const untyped = await send('POST', '/api/v1/recognize', ['hello ', 'world']);
        const after = await send('GET', '/health', []);

        assert.equal(empty.status, 400, JSON.stringify(empty.body));
        assert.equal(empty.body.error.code, 'IMAGE_EMPTY');
        assert.equal(untyped.status, 415);
        assert.equal(untyped.body.error.code, 'UNSUPPORTED_MEDIA_TYPE');
        assert.equal(after.status, 200);
        assert.equal(after.socket, untyped.socket);
      } finally {
        agent.destroy();
      }
    });

    test('verify refuses a raw image body and names its fields', async () => {
      const response = await call(stack, 'POST', '/api/v1/verify', {
        raw: await photo('edge/multi_face/couple.jpg'),
        type: 'image/jpeg',
      });

      assert.equal(response.status, 415);
      assert.equal(response.json.error.code, 'UNSUPPORTED_MEDIA_TYPE');
      assert.match(response.json.error.message, /\(image, image_a, image_b\)/);
      assert.match(response.json.error.message, /raw image\/jpeg body/);
    });

    test('verify rejects a mix of its two forms', async () => {
      const image = await photo('edge/png/32bit.png');
      const visitorId = '00000000-0000-4000-8000-000000000000';
      const mixes: [string, Record<string, Buffer>][] = [
        [`?visitor_id=${visitorId}`, { image_a: image, image_b: image }],
        [`?visitor_id=${visitorId}`, { image_a: image }],
        [`?visitor_id=${visitorId}`, { image, image_b: image }],
        ['', { image, image_a: image, image_b: image }],
        ['', { image }],
      ];

      for (const [query, form] of mixes) {
        const response = await call(stack, 'POST', `/api/v1/verify${query}`, { form });
        const label = `${query} ${Object.keys(form).join('+')}`;

        assert.equal(response.status, 400, label);
        assert.equal(response.json.error.code, 'INVALID_REQUEST', label);
      }
    });

    test('unknown or out-of-range query parameters get 400', async () => {
      const image = await photo('edge/png/32bit.png');

      const queries = ['?foo=1', '?min_score=7', '?limit=0', '?top_k=100', '?threshold=abc'];
      // Numbers are read only when written in decimal: not hexadecimal, padded or empty.
      for (const query of [...queries, '?top_k=0x3', '?top_k=%203%20', '?limit=', '?top_k=1e400']) {
        const response = await call(stack, 'POST', `/api/v1/recognize${query}`, { image });

        assert.equal(response.status, 400, query);
        assert.equal(response.json.error.code, 'INVALID_REQUEST', query);
      }
    });

    test('request id is taken from the header or made up', async () => {
      const given = await fetch(`${stack.url}/health`, { headers: { 'x-request-id': 'abc-123' } });
      const made = await fetch(`${stack.url}/health`);

      assert.equal(given.headers.get('x-request-id'), 'abc-123');
      assert.match(made.headers.get('x-request-id') ?? '', /^[0-9a-f-]{36}$/);
    });

    test('visitor CRUD with pagination and conflicts', async () => {
      const created = await call(stack, 'POST', '/api/v1/visitors', {
        json: { name: 'Ada', externalId: 'crud-1', metadata: { host: 'B2' } },
      });
      const duplicate = await call(stack, 'POST', '/api/v1/visitors', {
        json: { name: 'Other', externalId: 'crud-1' },
      });
      const invalid = await call(stack, 'POST', '/api/v1/visitors', {
        json: { name: '', extra: 1 },
      });
      await call(stack, 'POST', '/api/v1/visitors', { json: { name: 'Bob' } });
      const id = created.json.id as string;

      const fetched = await call(stack, 'GET', `/api/v1/visitors/${id}`);
      const patched = await call(stack, 'PATCH', `/api/v1/visitors/${id}`, {
        json: { name: 'Ada L.' },
      });
      const page = await call(stack, 'GET', '/api/v1/visitors?limit=1');
      const next = await call(
        stack,
        'GET',
        `/api/v1/visitors?limit=1&cursor=${encodeURIComponent(page.json.nextCursor)}`,
      );
      const badCursor = await call(stack, 'GET', '/api/v1/visitors?cursor=bm90LWEtY3Vyc29y');
      const badId = await call(stack, 'GET', '/api/v1/visitors/not-a-uuid');
      const deleted = await call(stack, 'DELETE', `/api/v1/visitors/${id}`);
      const gone = await call(stack, 'GET', `/api/v1/visitors/${id}`);

      assert.equal(created.status, 201);
      assert.equal(duplicate.status, 409);
      assert.equal(duplicate.json.error.code, 'CONFLICT');
      assert.equal(invalid.status, 400);
      assert.equal(fetched.json.metadata.host, 'B2');
      assert.equal(patched.json.name, 'Ada L.');
      assert.equal(patched.json.externalId, 'crud-1');
      assert.equal(page.json.items.length, 1);
      assert.ok(page.json.total >= 2);
      assert.notEqual(next.json.items[0].id, page.json.items[0].id);
      assert.equal(badCursor.status, 400);
      // Every INVALID_REQUEST lists its problems, whichever check found them.
      assert.deepEqual(badCursor.json.error.details.problems, [badCursor.json.error.message]);
      assert.equal(badId.status, 400);
      assert.equal(deleted.status, 204);
      assert.equal(gone.status, 404);
    });

    test('malformed paths and visitor fields get 400', async () => {
      const visitor = (await call(stack, 'POST', '/api/v1/visitors', { json: { name: 'Deep' } }))
        .json;
      // Written as text: JSON.stringify overflows the call stack on a value this deep.
      const deep = `${'['.repeat(5000)}1${']'.repeat(5000)}`;
      const deepBody = (fields: string): Buffer =>
        Buffer.from(`{${fields}"metadata":{"a":${deep}}}`);
      let nested32: unknown = 1;
      for (let level = 0; level < 31; level += 1) nested32 = [nested32];
      const paths = [
        ['GET', '/api/v1/visitors/%zz'],
        ['GET', '/api/v1/visitors/%E0%A4%A'],
        ['DELETE', `/api/v1/visitors/${visitor.id}/faces/%zz`],
        ['DELETE', '/api/v1/batches/%E0'],
      ] as const;
      const responses = [];
      for (const [method, path] of paths) responses.push(await call(stack, method, path));

      const tooDeep = await call(stack, 'POST', '/api/v1/visitors', {
        raw: deepBody('"name":"D",'),
        type: 'application/json',
      });
      const patchTooDeep = await call(stack, 'PATCH', `/api/v1/visitors/${visitor.id}`, {
        raw: deepBody(''),
        type: 'application/json',
      });
      // The error quotes a value as sent, which must not overflow on one this deep.
      const deepName = await call(stack, 'POST', '/api/v1/visitors', {
        raw: Buffer.from(`{"name":${deep}}`),
        type: 'application/json',
      });
      const deepParameter = await call(stack, 'POST', '/api/v1/detect', {
        raw: Buffer.from(
          `{"image":"${(await photo('edge/png/32bit.png')).toString('base64')}","min_score":${deep}}`,
        ),
        type: 'application/json',
      });
      const deepest = await call(stack, 'POST', '/api/v1/visitors', {
        json: { name: 'D32', metadata: { a: nested32 } },
      });
      const padded = await call(stack, 'POST', '/api/v1/visitors', {
        json: { name: 'P', externalId: ' emp-1 ' },
      });
      // "René" with its é in Latin-1, which is not UTF-8.
      const latin1 = await call(stack, 'POST', '/api/v1/visitors', {
        raw: Buffer.from('{"name":"Ren\u00e9"}', 'latin1'),
        type: 'application/json',
      });
      const utf16 = await call(stack, 'PATCH', `/api/v1/visitors/${visitor.id}`, {
        raw: Buffer.from('{"name":"Ren\u00e9"}', 'utf16le'),
        type: 'application/json; charset=UTF-16LE',
      });
      const loneSurrogate = await call(stack, 'POST', '/api/v1/visitors', {
        raw: Buffer.from('{"name":"Ren\\ud800"}'),
        type: 'application/json',
      });
      const declaredUtf8 = await call(stack, 'POST', '/api/v1/visitors', {
        raw: Buffer.from('{"name":"Ren\u00e9"}', 'utf8'),
        type: 'application/json; charset="UTF-8"',
      });
      const unchanged = await call(stack, 'GET', `/api/v1/visitors/${visitor.id}`);

      for (const [index, response] of responses.entries()) {
        assert.equal(response.status, 400, paths[index]!.join(' '));
        assert.equal(response.json.error.code, 'INVALID_REQUEST', paths[index]!.join(' '));
      }
      assert.equal(tooDeep.status, 400);
      assert.match(tooDeep.json.error.message, /nested more than 32 levels/);
      assert.equal(patchTooDeep.status, 400);
      assert.equal(deepName.status, 400, JSON.stringify(deepName.json));
      assert.equal(deepParameter.status, 400, JSON.stringify(deepParameter.json));
      assert.equal(deepest.status, 201, JSON.stringify(deepest.json));
      assert.equal(padded.status, 400);
      assert.match(padded.json.error.message, /externalId/);
      assert.equal(latin1.status, 400, JSON.stringify(latin1.json));
      assert.match(latin1.json.error.message, /not valid UTF-8/);
      assert.equal(utf16.status, 415, JSON.stringify(utf16.json));
      assert.equal(utf16.json.error.code, 'UNSUPPORTED_MEDIA_TYPE');
      assert.equal(loneSurrogate.status, 400, JSON.stringify(loneSurrogate.json));
      assert.match(loneSurrogate.json.error.message, /unpaired surrogate/);
      assert.equal(declaredUtf8.status, 201, JSON.stringify(declaredUtf8.json));
      assert.equal(declaredUtf8.json.name, 'Ren\u00e9');
      assert.deepEqual(unchanged.json.metadata, {});
      assert.equal(unchanged.json.name, 'Deep');
    });

    test('enrolment rules: one face, not too small, stored once', async () => {
      const visitor = (
        await call(stack, 'POST', '/api/v1/visitors', { json: { name: 'Aaron Peirsol' } })
      ).json;
      const path = `/api/v1/visitors/${visitor.id}/faces`;

      const first = await call(stack, 'POST', path, {
        image: await photo('lfw/Aaron_Peirsol/Aaron_Peirsol_0001.jpg'),
      });
      const again = await call(stack, 'POST', path, {
        image: await photo('lfw/Aaron_Peirsol/Aaron_Peirsol_0001.jpg'),
      });
      const noFace = await call(stack, 'POST', path, {
        image: await photo('edge/no_face/silver_fir.jpg'),
      });
      const several = await call(stack, 'POST', path, {
        image: await photo('edge/multi_face/couple.jpg'),
      });
      const tiny = await call(stack, 'POST', `${path}?multiple_faces=largest`, {
        image: await photo('edge/multi_face/3faces.png'),
      });
      const tinyFromBody = await call(stack, 'POST', path, {
        form: { image: await photo('edge/multi_face/3faces.png'), multiple_faces: 'largest' },
      });
      const missing = await call(
        stack,
        'POST',
        '/api/v1/visitors/00000000-0000-4000-8000-000000000000/faces',
        {
          image: await photo('lfw/Aaron_Peirsol/Aaron_Peirsol_0002.jpg'),
        },
      );
      // The face's id written in hexadecimal or with a fraction must not name it.
      const hexId = await call(stack, 'DELETE', `${path}/0x${first.json.face.id.toString(16)}`);
      const fractionId = await call(stack, 'DELETE', `${path}/${first.json.face.id}.0`);
      const list = await call(stack, 'GET', path);

      assert.equal(first.status, 201, JSON.stringify(first.json));
      assert.equal(hexId.status, 400);
      assert.equal(hexId.json.error.code, 'INVALID_REQUEST');
      assert.equal(fractionId.status, 400);
      assert.equal(first.json.face.modelId, 'mobilefacenet_foamliu_128d_int8');
      assert.match(first.json.face.imageSha256, /^[0-9a-f]{64}$/);
      assert.equal(again.status, 200);
      assert.equal(again.json.created, false);
      assert.equal(again.json.face.id, first.json.face.id);
      assert.equal(noFace.status, 422);
      assert.equal(noFace.json.error.code, 'NO_FACE');
      assert.equal(several.status, 422);
      assert.equal(several.json.error.code, 'MULTIPLE_FACES');
      assert.equal(tiny.status, 422);
      assert.equal(tiny.json.error.code, 'FACE_TOO_SMALL');
      assert.equal(tinyFromBody.json.error.code, 'FACE_TOO_SMALL');
      assert.equal(missing.status, 404);
      assert.equal(list.json.items.length, 1);
    });

    test('enrolment policies centre, center, largest', async () => {
      // In this LFW photo the labelled person is at the centre and a larger face on the right.
      const image = await photo('lfw/Julianne_Moore/Julianne_Moore_0001.jpg');
      const enrol = async (policy: string) => {
        const visitor = (await call(stack, 'POST', '/api/v1/visitors', { json: { name: policy } }))
          .json;
        return call(
          stack,
          'POST',
          `/api/v1/visitors/${visitor.id}/faces?multiple_faces=${policy}`,
          {
            image,
          },
        );
      };

      const centre = await enrol('centre');
      const center = await enrol('center');
      const largest = await enrol('largest');
      const unknown = await enrol('middle');

      assert.equal(centre.status, 201, JSON.stringify(centre.json));
      assert.equal(largest.status, 201, JSON.stringify(largest.json));
      const centreMidX = centre.json.face.box.x + centre.json.face.box.width / 2;
      const largestMidX = largest.json.face.box.x + largest.json.face.box.width / 2;
      assert.ok(Math.abs(centreMidX - 125) < 20, `centre face is centred at x=${centreMidX}`);
      assert.ok(largestMidX > 160, `largest face is centred at x=${largestMidX}`);
      assert.equal(center.status, 201, JSON.stringify(center.json));
      assert.deepEqual(center.json.face.box, centre.json.face.box);
      assert.equal(unknown.status, 400);
      assert.equal(unknown.json.error.code, 'INVALID_REQUEST');
    });

    test('recognize names an enrolled visitor and not a stranger', async () => {
      const visitor = (
        await call(stack, 'POST', '/api/v1/visitors', {
          json: { name: 'Obama', externalId: 'ext-obama' },
        })
      ).json;
      for (const file of ['obama.jpg', 'obama2.jpg']) {
        const enrolled = await call(stack, 'POST', `/api/v1/visitors/${visitor.id}/faces`, {
          image: await photo(`identity-small/face_recognition_knn/train/obama/${file}`),
        });
        assert.ok([200, 201].includes(enrolled.status), JSON.stringify(enrolled.json));
      }

      const known = await call(stack, 'POST', '/api/v1/recognize?top_k=3', {
        image: await photo('identity-small/face_recognition_knn/test/obama1.jpg'),
      });
      const stranger = await call(stack, 'POST', '/api/v1/recognize', {
        image: await photo('lfw/Aaron_Eckhart/Aaron_Eckhart_0001.jpg'),
      });

      assert.equal(known.status, 200, JSON.stringify(known.json));
      const face = known.json.faces[0];
      assert.equal(face.match.visitorId, visitor.id);
      assert.equal(face.match.externalId, 'ext-obama');
      assert.equal(face.match.name, 'Obama');
      assert.ok(face.match.similarity >= known.json.threshold);
      assert.ok(face.score > 0.7);
      const ids = face.candidates.map((candidate: { visitorId: string }) => candidate.visitorId);
      assert.equal(new Set(ids).size, ids.length);
      assert.equal(stranger.status, 200);
      assert.equal(stranger.json.faces[0].match, null);

      // The matcher caches names; a rename reaches it through a PostgreSQL notification.
      await call(stack, 'PATCH', `/api/v1/visitors/${visitor.id}`, {
        json: { name: 'Barack Obama' },
      });
      let renamed = '';
      for (let attempt = 0; attempt < 40 && renamed !== 'Barack Obama'; attempt += 1) {
        const again = await call(stack, 'POST', '/api/v1/recognize', {
          image: await photo('identity-small/face_recognition_knn/test/obama1.jpg'),
        });
        renamed = again.json.faces[0]?.match?.name ?? '';
        if (renamed !== 'Barack Obama') await new Promise((resolve) => setTimeout(resolve, 50));
      }
      assert.equal(renamed, 'Barack Obama');
    });

    test('recognitions are not stored by default', async () => {
      const db = createDatabase({
        url: TEST_DATABASE_URL,
        schema: stack.schema,
        maxConnections: 1,
      });

      const recognized = await call(stack, 'POST', '/api/v1/recognize', {
        image: await photo('identity-small/face_recognition_knn/test/obama1.jpg'),
      });
      const [{ count }] = await db.sql<[{ count: string }]>`
        select count(*) from ${db.sql(stack.schema)}.match_log`;
      await db.close();

      assert.equal(recognized.status, 200);
      assert.equal(Number(count), 0);
    });

    test('verify two images and an image against a visitor', async () => {
      const visitor = (await call(stack, 'POST', '/api/v1/visitors', { json: { name: 'Kit' } }))
        .json;
      await call(stack, 'POST', `/api/v1/visitors/${visitor.id}/faces`, {
        image: await photo('identity-small/face_recognition_knn/train/kit_harington/john1.jpeg'),
      });

      const pair = await call(stack, 'POST', '/api/v1/verify', {
        form: {
          image_a: await photo('lfw/Aaron_Peirsol/Aaron_Peirsol_0001.jpg'),
          image_b: await photo('lfw/Aaron_Peirsol/Aaron_Peirsol_0002.jpg'),
        },
      });
      const against = await call(stack, 'POST', `/api/v1/verify?visitor_id=${visitor.id}`, {
        form: { image: await photo('identity-small/face_recognition_knn/test/johnsnow_test1.jpg') },
      });
      const other = await call(stack, 'POST', `/api/v1/verify?visitor_id=${visitor.id}`, {
        form: { image: await photo('lfw/Aaron_Peirsol/Aaron_Peirsol_0001.jpg') },
      });
      const faceless = (await call(stack, 'POST', '/api/v1/visitors', { json: { name: 'None' } }))
        .json;
      const noEnrolment = await call(stack, 'POST', `/api/v1/verify?visitor_id=${faceless.id}`, {
        form: { image: await photo('lfw/Aaron_Peirsol/Aaron_Peirsol_0001.jpg') },
      });

      assert.equal(pair.status, 200, JSON.stringify(pair.json));
      assert.equal(pair.json.match, true);
      assert.equal(against.json.match, true, JSON.stringify(against.json));
      assert.equal(other.json.match, false);
      assert.equal(typeof other.json.threshold, 'number');
      assert.equal(noEnrolment.status, 409);
      assert.equal(noEnrolment.json.error.code, 'CONFLICT');
      assert.match(noEnrolment.json.error.message, /no enrolled face/);
    });

    test('deleted visitor is never returned; re-enrolled is found', async () => {
      const image = await photo(
        'identity-small/face_recognition_knn/train/alex_lacamoire/img1.jpg',
      );
      const probe = await photo('identity-small/face_recognition_knn/test/alex_lacamoire1.jpg');
      const first = (await call(stack, 'POST', '/api/v1/visitors', { json: { name: 'Alex' } }))
        .json;
      await call(stack, 'POST', `/api/v1/visitors/${first.id}/faces`, { image });

      const before = await call(stack, 'POST', '/api/v1/recognize', { image: probe });
      await call(stack, 'DELETE', `/api/v1/visitors/${first.id}`);
      const afterDelete = await call(stack, 'POST', '/api/v1/recognize?top_k=5', { image: probe });
      const second = (
        await call(stack, 'POST', '/api/v1/visitors', { json: { name: 'Alex again' } })
      ).json;
      await call(stack, 'POST', `/api/v1/visitors/${second.id}/faces`, { image });
      const afterReenrol = await call(stack, 'POST', '/api/v1/recognize', { image: probe });

      assert.equal(before.json.faces[0].match?.visitorId, first.id);
      for (const candidate of afterDelete.json.faces[0].candidates)
        assert.notEqual(candidate.visitorId, first.id);
      assert.equal(afterReenrol.json.faces[0].match?.visitorId, second.id);
    });

    test('index endpoint reports the HNSW parameters', async () => {
      const index = await call(stack, 'GET', '/api/v1/index');

      assert.equal(index.status, 200);
      for (const field of [
        'size',
        'capacity',
        'deletedCount',
        'M',
        'efConstruction',
        'ef',
        'modelId',
        'lastPersistedAt',
      ]) {
        assert.ok(field in index.json, `missing ${field}`);
      }
      assert.equal(index.json.modelId, 'mobilefacenet_foamliu_128d_int8');
      assert.ok(['avx2', 'portable'].includes(index.json.hnswlibBuild), index.json.hnswlibBuild);
      assert.equal(index.json.scoring, 'fused');
      assert.equal(index.json.identifyThreshold, 0.43);
    });

    test('every process serves metrics that move with requests', async () => {
      const image = await photo('identity-small/face_recognition_knn/test/obama1.jpg');
      const scrape = async (url: string): Promise<string> => (await fetch(url)).text();
      const count = (text: string, pattern: RegExp): number =>
        [...text.matchAll(pattern)].reduce((sum, match) => sum + Number(match[1]), 0);
      const before = await scrape(`${stack.url}/metrics`);

      for (let i = 0; i < 3; i += 1) await call(stack, 'POST', '/api/v1/recognize', { image });
      const gateway = await scrape(`${stack.url}/metrics`);
      const worker = await scrape(`http://127.0.0.1:${stack.metricsPorts.get('worker-1')}/metrics`);
      const matcher = await scrape(`http://127.0.0.1:${stack.metricsPorts.get('matcher')}/metrics`);

      const endToEnd =
        /facegate_stage_duration_seconds_count\{[^}]*stage="end_to_end"[^}]*\} (\d+)/g;
      assert.ok(count(gateway, endToEnd) >= count(before, endToEnd) + 3);
      assert.match(
        gateway,
        /facegate_http_requests_total\{[^}]*route="\/api\/v1\/recognize"[^}]*status="200"[^}]*\} \d+/,
      );
      assert.match(
        gateway,
        /facegate_queue_jobs\{[^}]*queue="inference"[^}]*state="waiting"[^}]*\} \d+/,
      );
      for (const stage of ['decode', 'detect', 'align', 'embed', 'queue_wait']) {
        assert.ok(
          count(
            worker,
            new RegExp(
              `facegate_stage_duration_seconds_count\\{[^}]*stage="${stage}"[^}]*\\} (\\d+)`,
              'g',
            ),
          ) >= 3,
          stage,
        );
      }
      assert.match(
        worker,
        /facegate_model_info\{[^}]*model_id="mobilefacenet_foamliu_128d_int8"[^}]*\} 1/,
      );
      assert.match(worker, /facegate_jobs_total\{[^}]*outcome="completed"[^}]*\} \d+/);
      assert.ok(
        count(matcher, /facegate_stage_duration_seconds_count\{[^}]*stage="match"[^}]*\} (\d+)/g) >=
          3,
      );
      assert.match(matcher, /facegate_index_faces\{[^}]*\} \d+/);
      assert.match(matcher, /facegate_process_cpu_seconds_total/);
    });

    test('parser rejections get JSON errors', async () => {
      const raw = (request: string): Promise<string> =>
        new Promise((resolve, reject) => {
          const socket = connect(stack.port, '127.0.0.1');
          const received: Buffer[] = [];
          socket.on('data', (chunk: Buffer) => received.push(chunk));
          socket.on('error', reject);
          socket.on('close', () => resolve(Buffer.concat(received).toString('latin1')));
          socket.write(request);
        });
      const bodyOf = (answer: string): { error: { code: string } } =>
        JSON.parse(answer.split('\r\n\r\n')[1]!);

      const longQuery = await raw(
        `GET /api/v1/visitors?cursor=${'a'.repeat(20_000)} HTTP/1.1\r\nHost: x\r\n\r\n`,
      );
      const malformed = await raw('GET / HTTP/1.1\r\nHost x\r\n\r\n');
      const health = await call(stack, 'GET', '/health');

      assert.match(longQuery, /^HTTP\/1\.1 431 /);
      assert.match(longQuery, /content-type: application\/json/i);
      assert.equal(bodyOf(longQuery).error.code, 'INVALID_REQUEST');
      assert.match(malformed, /^HTTP\/1\.1 400 /);
      assert.equal(bodyOf(malformed).error.code, 'INVALID_REQUEST');
      assert.equal(health.status, 200);
    });

    test('client hang-up is not an error', async () => {
      const socket = connect(stack.port, '127.0.0.1');
      await new Promise((resolve) => socket.once('connect', resolve));
      socket.write(
        'POST /api/v1/detect HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n' +
          'Content-Length: 100000\r\n\r\n',
      );
      socket.write(Buffer.alloc(1000, 0xff));
      await new Promise((resolve) => setTimeout(resolve, 200));
      socket.destroy();

      let log = '';
      for (let attempt = 0; attempt < 40 && !log.includes('client closed'); attempt += 1) {
        await new Promise((resolve) => setTimeout(resolve, 100));
        log = stack.logs.get('gateway')!.join('');
      }
      const errors = log.split('\n').filter((line) => line.includes('"level":"error"'));

      assert.match(log, /client closed the connection/);
      assert.deepEqual(errors, []);
    });

    test('unknown route is a JSON 404', async () => {
      const response = await call(stack, 'GET', '/api/v1/nothing');

      assert.equal(response.status, 404);
      assert.equal(response.json.error.code, 'NOT_FOUND');
    });

    test('wrong method on a known path is a 405', async () => {
      const response = await call(stack, 'PUT', `/api/v1/visitors/${randomUUID()}`);

      assert.equal(response.status, 405);
      assert.equal(response.json.error.code, 'METHOD_NOT_ALLOWED');
      assert.equal(response.headers.get('allow'), 'GET, PATCH, DELETE');
    });
  },
);
