import type { Config } from '@facegate/config';
import type { Queues } from '@facegate/contracts';
import type { Database } from '@facegate/db';
import type { Logger } from '@facegate/logger';

import type { VisionPool } from '../pool.js';
import type { FileReader } from './file-reader.js';

/** Dependencies of batch jobs: the worker's own pool, database, queues and model. */
export interface BatchContext {
  config: Config;
  pool: VisionPool;
  /** Reader of the image files of directory, manifest and path-column sources. */
  files: FileReader;
  db: Database;
  queues: Queues;
  logger: Logger;
  /** Embedding model of this worker's pool. */
  modelId: string;
}
