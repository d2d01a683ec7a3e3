import { FaceGateError } from '@facegate/errors';
import sharp from 'sharp';

import type { RgbImage } from './types.js';

export interface DecodeLimits {
  /** Largest accepted encoded size, in bytes. */
  maxImageBytes: number;
  /** Largest accepted width * height, read from the header before decoding. */
  maxImagePixels: number;
}

export interface DecodedImage extends RgbImage {
  /** Container format as detected from the leading bytes, e.g. 'jpeg'. */
  format: ImageFormat;
  /** EXIF orientation (1-8) that was applied, or 1 when there was none. */
  orientation: number;
}

export type ImageFormat =
  | 'jpeg'
  | 'png'
  | 'webp'
  | 'gif'
  | 'tiff'
  | 'avif'
  | 'heic'
  | 'bmp'
  | 'pdf'
  | 'svg'
  | 'jpegxl'
  | 'jpeg2000'
  | 'psd'
  | 'ico'
  | 'unknown';

const SUPPORTED: ReadonlySet<ImageFormat> = new Set(['jpeg', 'png', 'webp', 'gif', 'tiff', 'avif']);

/** Transparent pixels are composited onto white before detection. */
const FLATTEN_BACKGROUND = { r: 255, g: 255, b: 255 };

function ascii(bytes: Uint8Array, start: number, end: number): string {
  return String.fromCharCode(...bytes.subarray(start, end));
}

/** Identifies the container format from its magic bytes, without decoding. */
export function sniffFormat(bytes: Uint8Array): ImageFormat {
  if (bytes.length >= 3 && bytes[0] === 0xff && bytes[1] === 0xd8 && bytes[2] === 0xff)
    return 'jpeg';
  if (bytes.length >= 8 && ascii(bytes, 1, 4) === 'PNG' && bytes[0] === 0x89) return 'png';
  if (bytes.length >= 6 && (ascii(bytes, 0, 6) === 'GIF87a' || ascii(bytes, 0, 6) === 'GIF89a'))
    return 'gif';
  if (bytes.length >= 12 && ascii(bytes, 0, 4) === 'RIFF' && ascii(bytes, 8, 12) === 'WEBP')
    return 'webp';
  if (bytes.length >= 4) {
    const head = ascii(bytes, 0, 4);
    if (head === 'II*\0' || head === 'MM\0*') return 'tiff';
    if (head === '%PDF') return 'pdf';
    if (head === '8BPS') return 'psd';
  }
  if (bytes.length >= 12 && ascii(bytes, 4, 8) === 'ftyp') {
    const brand = ascii(bytes, 8, 12);
    if (brand === 'avif' || brand === 'avis') return 'avif';
    if (['heic', 'heix', 'hevc', 'hevx', 'heim', 'heis', 'mif1', 'msf1'].includes(brand))
      return 'heic';
  }
  if (bytes.length >= 2 && bytes[0] === 0xff && bytes[1] === 0x0a) return 'jpegxl';
  if (bytes.length >= 12 && ascii(bytes, 4, 8) === 'JXL ') return 'jpegxl';
  if (bytes.length >= 12 && ascii(bytes, 4, 8) === 'jP  ') return 'jpeg2000';
  if (bytes.length >= 2 && ascii(bytes, 0, 2) === 'BM') return 'bmp';
  if (bytes.length >= 4 && bytes[0] === 0 && bytes[1] === 0 && bytes[2] === 1 && bytes[3] === 0)
    return 'ico';
  const text = ascii(bytes, 0, Math.min(bytes.length, 256)).trimStart();
  if (text.startsWith('<svg') || (text.startsWith('<?xml') && text.includes('<svg'))) return 'svg';
  return 'unknown';
}

function formatName(format: ImageFormat): string {
  return format === 'unknown' ? 'unrecognised data' : format.toUpperCase();
}

function describeMegapixels(pixels: number): string {
  return `${(pixels / 1e6).toFixed(pixels >= 1e7 ? 0 : 1)} Mpx`;
}

/**
 * Checks the input cheaply (size, magic bytes, header dimensions), then decodes it
 * to upright 8-bit sRGB: EXIF orientation applied, alpha flattened onto white,
 * grayscale expanded to three channels, CMYK and 16-bit converted, first frame only.
 * Throws FaceGateError with IMAGE_EMPTY, IMAGE_TOO_LARGE, IMAGE_UNSUPPORTED_FORMAT
 * or IMAGE_CORRUPT.
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
  if (!SUPPORTED.has(format)) {
    throw new FaceGateError(
      'IMAGE_UNSUPPORTED_FORMAT',
      `unsupported image format: ${formatName(format)}; send JPEG, PNG, WebP, GIF, TIFF or AVIF`,
      { details: { detectedFormat: format } },
    );
  }

  const header = await readHeader(input, format);
  const pixels = header.width * header.height;
  if (pixels > limits.maxImagePixels) {
    throw new FaceGateError(
      'IMAGE_TOO_LARGE',
      `the image is ${header.width}x${header.height} (${describeMegapixels(pixels)}); ` +
        `the limit is ${describeMegapixels(limits.maxImagePixels)}`,
      {
        details: {
          width: header.width,
          height: header.height,
          maxImagePixels: limits.maxImagePixels,
        },
      },
    );
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
      orientation: header.orientation,
    };
  } catch (error) {
    throw new FaceGateError(
      'IMAGE_CORRUPT',
      `the ${formatName(format)} data is corrupt or truncated: ${reason(error)}`,
      { cause: error },
    );
  }
}

async function readHeader(
  input: Uint8Array,
  format: ImageFormat,
): Promise<{ width: number; height: number; orientation: number }> {
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
  return { width: metadata.width, height, orientation: metadata.orientation ?? 1 };
}

function reason(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  return message.split('\n')[0] ?? message;
}
