import { FaceGateError } from '@facegate/errors';
import sharp from 'sharp';

import { decodePlainJpeg } from './fast-jpeg.js';
import { type ImageFormat, SUPPORTED_FORMATS, formatName, sniffFormat } from './sniff.js';
import type { RgbImage } from './types.js';

export type { ImageFormat } from './sniff.js';

export interface DecodeLimits {
  /** Largest accepted encoded size, in bytes. */
  maxImageBytes: number;
  /** Largest accepted width * height, read from the header before decoding. */
  maxImagePixels: number;
}

export interface DecodedImage extends RgbImage {
  /** Container format as detected from the leading bytes, e.g. 'jpeg'. */
  format: ImageFormat;
}

/** Transparent pixels are composited onto white before detection. */
const FLATTEN_BACKGROUND = { r: 255, g: 255, b: 255 };

function describeMegapixels(pixels: number): string {
  return `${(pixels / 1e6).toFixed(pixels >= 1e7 ? 0 : 1)} Mpx`;
}

/** libvips's message when the header's width * height exceeds `limitInputPixels`. */
const PIXEL_LIMIT_MESSAGE = /exceeds pixel limit/i;

/**
 * Checks the input cheaply (size, magic bytes, header dimensions), then decodes it
 * to upright 8-bit sRGB: EXIF orientation applied, alpha flattened onto white,
 * grayscale expanded to three channels, CMYK and 16-bit converted, first frame only.
 * Throws FaceGateError with IMAGE_EMPTY, IMAGE_TOO_LARGE, IMAGE_UNSUPPORTED_FORMAT
 * or IMAGE_CORRUPT. Plain JPEG files take a faster path with the same result
 * (fast-jpeg.ts); everything else, and every error, goes through sharp.
 */
export async function decodeImage(input: Uint8Array, limits: DecodeLimits): Promise<DecodedImage> {
  if (input.length === 0) throw new FaceGateError('IMAGE_EMPTY', 'the image is empty (0 bytes)');
  if (input.length > limits.maxImageBytes) {
    throw new FaceGateError(
      'IMAGE_TOO_LARGE',
      `the image is ${input.length} bytes; the limit is ${limits.maxImageBytes} bytes`,
      { details: { bytes: input.length, maxImageBytes: limits.maxImageBytes } },
    );
  }

  const format = sniffFormat(input);
  if (!SUPPORTED_FORMATS.has(format)) {
    throw new FaceGateError(
      'IMAGE_UNSUPPORTED_FORMAT',
      `unsupported image format: ${formatName(format)}; send JPEG, PNG, WebP, GIF, TIFF or AVIF`,
      { details: { detectedFormat: format } },
    );
  }

  if (format === 'jpeg') {
    const plain = decodePlainJpeg(input, limits.maxImagePixels);
    if (plain) return { ...plain, format };
  }

  try {
    const { data, info } = await sharp(input, {
      failOn: 'truncated',
      limitInputPixels: limits.maxImagePixels,
      pages: 1,
    })
      .rotate()
      .flatten({ background: FLATTEN_BACKGROUND })
      .toColourspace('srgb')
      .removeAlpha()
      .raw({ depth: 'uchar' })
      .toBuffer({ resolveWithObject: true });
    if (info.channels !== 3) {
      throw new Error(`decoder produced ${info.channels} channels, expected 3`);
    }
    return {
      width: info.width,
      height: info.height,
      data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
      format,
    };
  } catch (error) {
    // sharp checks the header's dimensions against the limit before decoding any pixel.
    // The header is read a second time only here, to name the size in the message.
    if (error instanceof Error && PIXEL_LIMIT_MESSAGE.test(error.message)) {
      throw await tooManyPixels(input, format, limits.maxImagePixels);
    }
    throw new FaceGateError(
      'IMAGE_CORRUPT',
      `the ${formatName(format)} data is corrupt or truncated: ${reason(error)}`,
      { cause: error },
    );
  }
}

async function tooManyPixels(
  input: Uint8Array,
  format: ImageFormat,
  maxImagePixels: number,
): Promise<FaceGateError> {
  const header = await readHeader(input, format);
  const pixels = header.width * header.height;
  return new FaceGateError(
    'IMAGE_TOO_LARGE',
    `the image is ${header.width}x${header.height} (${describeMegapixels(pixels)}); ` +
      `the limit is ${describeMegapixels(maxImagePixels)}`,
    { details: { width: header.width, height: header.height, maxImagePixels } },
  );
}

async function readHeader(
  input: Uint8Array,
  format: ImageFormat,
): Promise<{ width: number; height: number }> {
  let metadata: sharp.Metadata;
  try {
    metadata = await sharp(input, { limitInputPixels: false }).metadata();
  } catch (error) {
    throw new FaceGateError(
      'IMAGE_CORRUPT',
      `the ${formatName(format)} header cannot be read: ${reason(error)}`,
      { cause: error },
    );
  }
  if (!metadata.width || !metadata.height) {
    throw new FaceGateError('IMAGE_CORRUPT', `the ${formatName(format)} header has no dimensions`);
  }
  // GIF and multi-page TIFF report the height of all pages stacked; only the first is decoded.
  const height = metadata.pageHeight ?? metadata.height;
  return { width: metadata.width, height };
}

/**
 * Module names that libvips puts before its error messages ("VipsJpeg: ", "pngload_buffer: ",
 * "tiff2vips: "), also after sharp's own prefix. They are libvips internals, so clients get
 * the message without them.
 */
const LIBVIPS_MODULE_PREFIX = /(^|: )(?:Vips\w*|\w+load(?:_buffer)?|\w+2vips): /g;

/** The first line of a decoder's error message, without libvips's module name. */
function reason(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  const line = message.split('\n')[0] ?? message;
  return line.replace(LIBVIPS_MODULE_PREFIX, '$1') || line;
}
