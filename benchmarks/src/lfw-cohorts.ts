/**
 * The groups of LFW people the identification benchmarks use, from the lists
 * in lfw-meta/. The gallery is the people with at least 10 photos, the
 * strangers have 2 to 9 photos. The embeddings of people with a single photo
 * only shape the synthetic distractors.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';

import type { LfwEmbeddingSet, LfwPhoto } from './embed-lfw.js';

export interface LfwCohorts {
  /** people_min10.txt: 158 people, the enrolled gallery. */
  galleryPeople: string[];
  /** people_min2.txt minus the gallery: 1,522 people who are never enrolled. */
  strangerPeople: string[];
  /** Everyone else in lfw/: one photo each, neither enrolled nor used as a probe. */
  singlePhotoPeople: string[];
  /** Every person's photos, ordered by photo number. */
  photosByPerson: Map<string, LfwPhoto[]>;
}

/** Reads a people list: one name per line, anything after the name ignored. */
export async function readPeopleList(facesDir: string, file: string): Promise<string[]> {
  const text = await readFile(join(facesDir, 'lfw-meta', file), 'utf8');
  return text
    .split('\n')
    .map((line) => line.trim().split(/\s+/)[0] ?? '')
    .filter((name) => name.length > 0);
}

export async function loadLfwCohorts(facesDir: string, set: LfwEmbeddingSet): Promise<LfwCohorts> {
  const photosByPerson = new Map<string, LfwPhoto[]>();
  for (const photo of set.photos) {
    const photos = photosByPerson.get(photo.person) ?? [];
    photos.push(photo);
    photosByPerson.set(photo.person, photos);
  }
  for (const photos of photosByPerson.values())
    photos.sort((a, b) => a.photoNumber - b.photoNumber);

  const galleryPeople = await readPeopleList(facesDir, 'people_min10.txt');
  const atLeastTwo = new Set(await readPeopleList(facesDir, 'people_min2.txt'));
  const gallery = new Set(galleryPeople);
  for (const person of [...galleryPeople, ...atLeastTwo]) {
    if (!photosByPerson.has(person))
      throw new Error(`${person} is listed in lfw-meta/ but has no photos in lfw/`);
  }

  const strangerPeople = [...atLeastTwo].filter((person) => !gallery.has(person));
  const singlePhotoPeople = [...photosByPerson.keys()].filter((person) => !atLeastTwo.has(person));
  return { galleryPeople, strangerPeople, singlePhotoPeople, photosByPerson };
}

/** Finds the photo with this number (from 1); throws an error naming it when it is missing. */
export function photoOf(cohorts: LfwCohorts, person: string, photoNumber: number): LfwPhoto {
  const photo = cohorts.photosByPerson
    .get(person)
    ?.find((entry) => entry.photoNumber === photoNumber);
  if (!photo) throw new Error(`LFW photo ${photoNumber} of ${person} is missing`);
  return photo;
}

/** Embeddings of photos where a face was found. */
export function vectorsOf(photos: readonly LfwPhoto[]): Float32Array[] {
  return photos.flatMap((photo) => (photo.vector ? [photo.vector] : []));
}
