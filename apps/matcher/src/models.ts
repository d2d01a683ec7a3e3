import type { Config } from '@facegate/config';

/** Model id and feature length of each FACE_EMBEDDER choice. */
export interface EmbedderModel {
  /** Manifest name of the embedder; stored with every face and saved with the index. */
  modelId: string;
  dim: number;
}

// The same names as the embedder manifests of @facegate/vision, copied here because
// importing that package would load onnxruntime into the matcher. Keep them in step.
const EMBEDDER_MODELS: Readonly<Record<Config['faceEmbedder'], EmbedderModel>> = {
  mobilefacenet: { modelId: 'mobilefacenet_foamliu_128d', dim: 128 },
  sface: { modelId: 'sface_2021dec', dim: 128 },
  sface_int8: { modelId: 'sface_2021dec_int8', dim: 128 },
  mobilefacenet_int8: { modelId: 'mobilefacenet_foamliu_128d_int8', dim: 128 },
};

export function embedderModel(faceEmbedder: Config['faceEmbedder']): EmbedderModel {
  return EMBEDDER_MODELS[faceEmbedder];
}
