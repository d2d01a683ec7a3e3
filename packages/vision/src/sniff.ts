// Format detection from magic bytes. Kept free of sharp and onnxruntime so the
// gateway can reject a non-image before it reaches a worker.

/** Container formats told apart by their leading bytes. */
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

/** The formats the decoder accepts. */
export const SUPPORTED_FORMATS: ReadonlySet<ImageFormat> = new Set([
  'jpeg',
  'png',
  'webp',
  'gif',
  'tiff',
  'avif',
]);

/** A format's name for messages: 'HEIC', 'JPEG', or 'unrecognised data'. */
export function formatName(format: ImageFormat): string {
  return format === 'unknown' ? 'unrecognised data' : format.toUpperCase();
}
