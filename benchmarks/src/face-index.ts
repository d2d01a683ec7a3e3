// The face index and the identification thresholds the benchmarks measure.
export { FaceIndex, exactTopK } from '@facegate/index';
export { defaultIdentifyThreshold } from '@facegate/contracts';
