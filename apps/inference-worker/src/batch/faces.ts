import type { FaceBox, ItemOutcome, MultipleFacesPolicy } from '@facegate/db';
import { type DetectedFace, faceNearest, largestFace } from '@facegate/vision';

/** The face to store, or the final outcome of an image that yields none. */
export type FaceChoice<T extends DetectedFace> =
  | { face: T; faceSize: number; reason: string | null }
  | { outcome: ItemOutcome };

/**
 * Applies the enrolment rules to the faces found in one image, with the error codes of
 * POST /api/v1/visitors/{id}/faces for the outcomes that store nothing. No face is no_face.
 * Several faces are multiple_faces under 'skip'. Else 'largest' takes the largest and 'centre'
 * the one nearest the centre of `image`, and re-extraction takes the one nearest the stored
 * face's box. A face whose shorter side is below `minFaceSize` pixels is too_small.
 */
export function chooseFace<T extends DetectedFace>(
  faces: readonly T[],
  image: { width: number; height: number },
  policy: MultipleFacesPolicy,
  minFaceSize: number,
  storedBox?: FaceBox | null,
): FaceChoice<T> {
  const count = faces.length;
  if (count === 0) {
    return {
      outcome: {
        status: 'no_face',
        code: 'NO_FACE',
        reason: 'no face was found in the image',
        facesDetected: 0,
      },
    };
  }

  let face: T;
  let reason: string | null = null;
  if (count === 1) {
    face = faces[0]!;
  } else if (storedBox) {
    const centreX = storedBox.x + storedBox.width / 2;
    const centreY = storedBox.y + storedBox.height / 2;
    face = faceNearest(faces, centreX, centreY)!;
    reason = `the image shows ${count} faces; took the one nearest the stored face`;
  } else if (policy === 'largest') {
    face = largestFace(faces)!;
    reason = `the image shows ${count} faces; took the largest`;
  } else if (policy === 'centre') {
    face = faceNearest(faces, image.width / 2, image.height / 2)!;
    reason = `the image shows ${count} faces; took the one nearest the centre`;
  } else {
    return {
      outcome: {
        status: 'multiple_faces',
        code: 'MULTIPLE_FACES',
        reason: `the image shows ${count} faces; multipleFaces 'skip' stores none`,
        facesDetected: count,
      },
    };
  }

  const faceSize = Math.round(Math.min(face.box.width, face.box.height));
  if (faceSize < minFaceSize) {
    return {
      outcome: {
        status: 'too_small',
        code: 'FACE_TOO_SMALL',
        reason: `the face is ${faceSize} px on its shorter side; enrolment needs at least ${minFaceSize} px`,
        facesDetected: count,
      },
    };
  }
  return { face, faceSize, reason };
}
