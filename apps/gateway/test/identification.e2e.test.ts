import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import { FACES_MISSING, facesDir } from '@facegate/config';

import { Stack, call, mapConcurrent } from '@facegate/testing';

const faces = facesDir();
const stack = new Stack();
const CONCURRENCY = 4;

function lfwPath(name: string, index: number): string {
  return join(faces!, 'lfw', name, `${name}_${String(index).padStart(4, '0')}.jpg`);
}

async function readList(file: string): Promise<string[]> {
  return (await readFile(join(faces!, 'lfw-meta', file), 'utf8'))
    .trim()
    .split('\n')
    .map((line) => line.trim().split(/\s+/)[0]!)
    .filter(Boolean);
}

/** The face nearest the centre of an LFW photo: the labelled person. */
function centreFace(body: any): any {
  const centre = { x: body.image.width / 2, y: body.image.height / 2 };
  let best: any;
  let bestDistance = Infinity;
  for (const face of body.faces) {
    const distance = Math.hypot(
      face.box.x + face.box.width / 2 - centre.x,
      face.box.y + face.box.height / 2 - centre.y,
    );
    if (distance < bestDistance) {
      best = face;
      bestDistance = distance;
    }
  }
  return best;
}

describe(
  'identification on LFW through the running stack',
  { skip: faces ? false : FACES_MISSING, timeout: 900_000 },
  () => {
    const visitorOf = new Map<string, string>();

    before(async () => {
      await stack.start({ workers: 2 });
    });

    after(async () => {
      await stack.stopAll();
    });

    test('enrols the 158 people with at least 10 photos, photos 1-3', async () => {
      const people = await readList('people_min10.txt');
      assert.equal(people.length, 158);

      const failures = await mapConcurrent(people, CONCURRENCY, async (name) => {
        const visitor = await call(stack, 'POST', '/api/v1/visitors', {
          json: { name, externalId: name },
        });
        visitorOf.set(name, visitor.json.id);
        const problems: string[] = [];
        for (const index of [1, 2, 3]) {
          // LFW labels the person at the centre of a photo, who is not always the largest face.
          const enrolled = await call(
            stack,
            'POST',
            `/api/v1/visitors/${visitor.json.id}/faces?multiple_faces=centre`,
            {
              image: await readFile(lfwPath(name, index)),
            },
          );
          if (enrolled.status !== 201)
            problems.push(`${name} ${index}: ${enrolled.status} ${JSON.stringify(enrolled.json)}`);
        }
        return problems;
      });

      assert.deepEqual(failures.flat(), []);
    });

    test('identifies at least 97% of their photos 4-8', async () => {
      const probes = [...visitorOf.keys()].flatMap((name) =>
        [4, 5, 6, 7, 8].map((index) => ({ name, index })),
      );

      const outcomes = await mapConcurrent(probes, CONCURRENCY, async ({ name, index }) => {
        const response = await call(stack, 'POST', '/api/v1/recognize', {
          image: await readFile(lfwPath(name, index)),
        });
        assert.equal(response.status, 200, JSON.stringify(response.json));
        return centreFace(response.json)?.match?.visitorId === visitorOf.get(name);
      });
      const rate = outcomes.filter(Boolean).length / outcomes.length;

      console.log(`identified correctly: ${(rate * 100).toFixed(2)}% of ${outcomes.length} probes`);
      assert.equal(outcomes.length, 790);
      assert.ok(rate >= 0.97, `identified ${(rate * 100).toFixed(2)}%`);
    });

    test('accepts at most 2% of 1,522 strangers', async () => {
      const enrolled = new Set(visitorOf.keys());
      const strangers = (await readList('people_min2.txt')).filter((name) => !enrolled.has(name));

      const accepted = await mapConcurrent(strangers, CONCURRENCY, async (name) => {
        const response = await call(stack, 'POST', '/api/v1/recognize', {
          image: await readFile(lfwPath(name, 1)),
        });
        assert.equal(response.status, 200, JSON.stringify(response.json));
        return centreFace(response.json)?.match != null;
      });
      const rate = accepted.filter(Boolean).length / accepted.length;

      console.log(`strangers accepted: ${(rate * 100).toFixed(2)}% of ${accepted.length}`);
      assert.equal(strangers.length, 1522);
      assert.ok(rate <= 0.02, `accepted ${(rate * 100).toFixed(2)}% of strangers`);
    });

    test('knn set: train enrolled, test recognised including two-face photos', async () => {
      const base = join(faces!, 'identity-small', 'face_recognition_knn');
      const people: Record<string, string[]> = {
        alex_lacamoire: ['img1.jpg'],
        biden: ['biden.jpg', 'biden2.jpg'],
        kit_harington: ['john1.jpeg', 'john2.jpeg'],
        obama: ['obama.jpg', 'obama2.jpg'],
        rose_leslie: ['img1.jpg', 'img2.jpg'],
      };
      const ids = new Map<string, string>();
      for (const [person, files] of Object.entries(people)) {
        const visitor = await call(stack, 'POST', '/api/v1/visitors', {
          json: { name: person, externalId: `knn-${person}` },
        });
        ids.set(person, visitor.json.id);
        for (const file of files) {
          const enrolled = await call(
            stack,
            'POST',
            `/api/v1/visitors/${visitor.json.id}/faces?multiple_faces=largest`,
            {
              image: await readFile(join(base, 'train', person, file)),
            },
          );
          assert.equal(enrolled.status, 201, `${person}/${file}: ${JSON.stringify(enrolled.json)}`);
        }
      }
      const expected: Record<string, string[]> = {
        'alex_lacamoire1.jpg': ['alex_lacamoire'],
        'johnsnow_test1.jpg': ['kit_harington'],
        'kit_with_rose.jpg': ['kit_harington', 'rose_leslie'],
        'obama1.jpg': ['obama'],
        'obama_and_biden.jpg': ['biden', 'obama'],
      };

      for (const [file, names] of Object.entries(expected)) {
        const response = await call(stack, 'POST', '/api/v1/recognize', {
          image: await readFile(join(base, 'test', file)),
        });
        const found = response.json.faces
          .map((face: any) => face.match?.visitorId)
          .filter((id: string | undefined) => id !== undefined && [...ids.values()].includes(id))
          .map((id: string) => [...ids].find(([, value]) => value === id)![0])
          .sort();

        assert.deepEqual(found, names, file);
      }
    });

    test('matcher restart gives the same answers', async () => {
      const probes = [...visitorOf.keys()].slice(0, 20).map((name) => lfwPath(name, 4));
      const answer = async (path: string): Promise<unknown> => {
        const response = await call(stack, 'POST', '/api/v1/recognize?top_k=3', {
          image: await readFile(path),
        });
        return centreFace(response.json)?.candidates.map((c: any) => [
          c.visitorId,
          c.similarity.toFixed(4),
        ]);
      };
      const before = await mapConcurrent(probes, CONCURRENCY, answer);

      assert.equal(await stack.stop('matcher'), 0);
      stack.spawn('matcher');
      await stack.waitReady();
      const afterRestart = await mapConcurrent(probes, CONCURRENCY, answer);

      assert.deepEqual(afterRestart, before);
      const log = stack.logs.get('matcher')!.join('');
      assert.match(log, /loaded/i);
    });
  },
);
