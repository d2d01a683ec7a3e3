import { z } from 'zod';

import type { Scope } from '@facegate/auth';

import { batchIdParams, batchItemsQuery, batchListQuery, newBatchBody } from './batches.js';
import { auditQuery, keyIdParams, newKeyBody } from './keys.js';
import * as responses from './responses.js';
import * as schemas from './schemas.js';

type Method = 'get' | 'post' | 'patch' | 'delete';
type Body = 'image' | 'verify' | z.ZodType;

interface RouteSpec {
  method: Method;
  path: string;
  /** Scope an API key needs; unset for the public routes. */
  scope?: Scope;
  summary: string;
  query?: z.ZodObject;
  pathParams?: z.ZodObject;
  body?: Body;
  responses: Record<number, { description: string; schema?: z.ZodType }>;
}

const error = (description: string): { description: string; schema: z.ZodType } => ({
  description,
  schema: responses.errorResponse,
});
const imageErrors = {
  400: error(
    'Invalid request, empty or corrupt image (INVALID_REQUEST, IMAGE_EMPTY, IMAGE_CORRUPT).',
  ),
  413: error('Upload or image too large (PAYLOAD_TOO_LARGE, IMAGE_TOO_LARGE).'),
  415: error('Unsupported content type or image format.'),
  503: error('A dependency is unavailable or the queue is full (Retry-After is set).'),
  504: error('No result within REQUEST_TIMEOUT_MS.'),
};

/** Every REST route with the schemas that validate it; the OpenAPI document is generated from this list. */
export const ROUTES: RouteSpec[] = [
  {
    method: 'get',
    path: '/health',
    summary: 'Process alive',
    responses: { 200: { description: 'Alive', schema: responses.healthResponse } },
  },
  {
    method: 'get',
    path: '/ready',
    summary: 'Readiness of PostgreSQL, Redis, inference workers and the matcher',
    responses: {
      200: { description: 'Ready', schema: responses.readyResponse },
      503: { description: 'Not ready; per-check detail', schema: responses.readyResponse },
    },
  },
  {
    method: 'post',
    path: '/api/v1/detect',
    scope: 'recognize',
    summary: 'Find every face in an image',
    query: schemas.detectQuery,
    body: 'image',
    responses: {
      200: { description: 'Faces found', schema: responses.detectResponse },
      ...imageErrors,
    },
  },
  {
    method: 'post',
    path: '/api/v1/recognize',
    scope: 'recognize',
    summary: 'Find and identify every face among the registered visitors',
    query: schemas.recognizeQuery,
    body: 'image',
    responses: {
      200: { description: 'Faces with match and candidates', schema: responses.recognizeResponse },
      ...imageErrors,
    },
  },
  {
    method: 'post',
    path: '/api/v1/verify',
    scope: 'recognize',
    summary: 'Compare two images, or an image with a visitor',
    query: schemas.verifyQuery,
    body: 'verify',
    responses: {
      200: { description: 'Similarity and decision', schema: responses.verifyResponse },
      404: error('Visitor not found.'),
      409: error('The visitor has no enrolled face for the model (CONFLICT).'),
      422: error('No face in an image (NO_FACE).'),
      ...imageErrors,
    },
  },
  {
    method: 'post',
    path: '/api/v1/visitors',
    scope: 'enrol',
    summary: 'Register a visitor',
    body: schemas.newVisitorBody,
    responses: {
      201: { description: 'Created', schema: responses.visitorResponse },
      400: error('Invalid body.'),
      409: error('externalId already used.'),
    },
  },
  {
    method: 'get',
    path: '/api/v1/visitors',
    scope: 'enrol',
    summary: 'List visitors (paginated)',
    query: schemas.listVisitorsQuery,
    responses: {
      200: { description: 'A page of visitors', schema: responses.visitorListResponse },
      400: error('Invalid query.'),
    },
  },
  {
    method: 'get',
    path: '/api/v1/visitors/{id}',
    scope: 'enrol',
    summary: 'Get a visitor',
    pathParams: schemas.visitorIdParams,
    responses: {
      200: { description: 'The visitor', schema: responses.visitorResponse },
      404: error('Not found.'),
    },
  },
  {
    method: 'patch',
    path: '/api/v1/visitors/{id}',
    scope: 'enrol',
    summary: 'Change a visitor',
    pathParams: schemas.visitorIdParams,
    body: schemas.visitorPatchBody,
    responses: {
      200: { description: 'The changed visitor', schema: responses.visitorResponse },
      404: error('Not found.'),
      409: error('externalId already used.'),
    },
  },
  {
    method: 'delete',
    path: '/api/v1/visitors/{id}',
    scope: 'enrol',
    summary:
      'Erase a visitor: faces, embeddings, image hashes, match log rows and batch item names, in the database and in every running matcher',
    pathParams: schemas.visitorIdParams,
    responses: {
      204: { description: 'Erased everywhere' },
      202: {
        description: 'Erased from the database; some matchers have not confirmed yet',
        schema: responses.erasurePendingResponse,
      },
      404: error('Not found.'),
    },
  },
  {
    method: 'post',
    path: '/api/v1/visitors/{id}/faces',
    scope: 'enrol',
    summary: 'Enrol one photo of a visitor',
    pathParams: schemas.visitorIdParams,
    query: schemas.enrolQuery,
    body: 'image',
    responses: {
      201: { description: 'Face stored', schema: responses.enrolResponse },
      200: { description: 'The same image was already stored', schema: responses.enrolResponse },
      404: error('Visitor not found.'),
      422: error('NO_FACE, MULTIPLE_FACES or FACE_TOO_SMALL.'),
      ...imageErrors,
    },
  },
  {
    method: 'get',
    path: '/api/v1/visitors/{id}/faces',
    scope: 'enrol',
    summary: "List a visitor's stored faces",
    pathParams: schemas.visitorIdParams,
    responses: {
      200: { description: 'Stored faces', schema: responses.faceListResponse },
      404: error('Not found.'),
    },
  },
  {
    method: 'delete',
    path: '/api/v1/visitors/{id}/faces/{faceId}',
    scope: 'enrol',
    summary: 'Delete one stored face, in the database and in every running matcher',
    pathParams: schemas.faceIdParams,
    responses: {
      204: { description: 'Deleted everywhere' },
      202: {
        description: 'Deleted from the database; some matchers have not confirmed yet',
        schema: responses.erasurePendingResponse,
      },
      404: error('Not found.'),
    },
  },
  {
    method: 'post',
    path: '/api/v1/batches',
    scope: 'enrol',
    summary: 'Start a bulk enrolment from a directory, a manifest or a database table',
    body: newBatchBody,
    responses: {
      202: {
        description: 'Batch accepted; planning runs in a worker',
        schema: responses.batchAcceptedResponse,
      },
      400: error('Invalid source or options.'),
      415: error('Not JSON.'),
      503: error('Redis or PostgreSQL unavailable.'),
    },
  },
  {
    method: 'get',
    path: '/api/v1/batches',
    scope: 'enrol',
    summary: 'Batches, newest first, optionally by status, with their counts (paginated)',
    query: batchListQuery,
    responses: {
      200: { description: 'A page of batches', schema: responses.batchListResponse },
      400: error('Invalid query.'),
    },
  },
  {
    method: 'get',
    path: '/api/v1/batches/{id}',
    scope: 'enrol',
    summary: 'Progress and outcome counts of a batch',
    pathParams: batchIdParams,
    responses: {
      200: { description: 'Batch report', schema: responses.batchReportResponse },
      404: error('Not found.'),
    },
  },
  {
    method: 'get',
    path: '/api/v1/batches/{id}/items',
    scope: 'enrol',
    summary: 'Items of a batch, optionally by status (paginated)',
    pathParams: batchIdParams,
    query: batchItemsQuery,
    responses: {
      200: { description: 'A page of items', schema: responses.batchItemsResponse },
      400: error('Invalid query.'),
      404: error('Not found.'),
    },
  },
  {
    method: 'delete',
    path: '/api/v1/batches/{id}',
    scope: 'enrol',
    summary: 'Cancel a batch',
    pathParams: batchIdParams,
    responses: {
      200: { description: 'Cancelled; final counts', schema: responses.batchReportResponse },
      404: error('Not found.'),
      409: error('The batch already ended.'),
    },
  },
  {
    method: 'get',
    path: '/api/v1/index',
    scope: 'admin',
    summary: 'State of the matcher and its HNSW index',
    responses: {
      200: { description: 'Index state', schema: responses.indexResponse },
      503: error('No matcher running.'),
    },
  },
  {
    method: 'get',
    path: '/api/v1/keys',
    scope: 'admin',
    summary: 'List API keys (without secrets), revoked ones included',
    responses: { 200: { description: 'Keys', schema: responses.keyListResponse } },
  },
  {
    method: 'post',
    path: '/api/v1/keys',
    scope: 'admin',
    summary: 'Create an API key; the response is the only place the key appears',
    body: newKeyBody,
    responses: {
      201: { description: 'Created, with the key', schema: responses.createdKeyResponse },
      400: error('Invalid body.'),
      413: error('Body larger than 16 KiB (PAYLOAD_TOO_LARGE).'),
      415: error('Body is not JSON (UNSUPPORTED_MEDIA_TYPE).'),
    },
  },
  {
    method: 'delete',
    path: '/api/v1/keys/{id}',
    scope: 'admin',
    summary: 'Revoke an API key on every gateway',
    pathParams: keyIdParams,
    responses: {
      200: { description: 'Revoked', schema: responses.keyResponse },
      404: error('Not found.'),
      409: error('The key comes from API_KEYS.'),
    },
  },
  {
    method: 'get',
    path: '/api/v1/audit',
    scope: 'admin',
    summary: 'Audit log: enrolments, deletions, batches and key changes, newest first',
    query: auditQuery,
    responses: {
      200: { description: 'A page of entries', schema: responses.auditResponse },
      400: error('Invalid query.'),
    },
  },
];

function jsonSchema(schema: z.ZodType, io: 'input' | 'output'): Record<string, unknown> {
  const generated = z.toJSONSchema(schema, {
    target: 'draft-2020-12',
    io,
    unrepresentable: 'any',
    override: ({ zodSchema, jsonSchema: node }) => {
      // In input mode zod leaves out the default of a parameter read through numberParameter.
      const def = zodSchema._zod.def;
      if (def.type === 'default' && !('default' in node)) node.default = def.defaultValue;
    },
  }) as Record<string, unknown>;
  delete generated.$schema;
  return generated;
}

const imageBinary = {
  type: 'string',
  format: 'binary',
  description: 'JPEG, PNG, WebP, GIF, TIFF or AVIF; at most MAX_IMAGE_BYTES.',
};

function requestBody(body: Body): Record<string, unknown> {
  if (body === 'image') {
    return {
      required: true,
      content: {
        'multipart/form-data': {
          schema: { type: 'object', required: ['image'], properties: { image: imageBinary } },
        },
        'image/*': { schema: imageBinary },
        'application/json': {
          schema: {
            type: 'object',
            required: ['image'],
            properties: { image: { type: 'string', contentEncoding: 'base64' } },
          },
        },
      },
    };
  }
  if (body === 'verify') {
    const properties = {
      image_a: imageBinary,
      image_b: imageBinary,
      image: imageBinary,
      visitor_id: { type: 'string', format: 'uuid' },
    };
    return {
      required: true,
      description: 'Either image_a and image_b, or image with visitor_id (here or in the query).',
      content: {
        'multipart/form-data': { schema: { type: 'object', properties } },
        'application/json': {
          schema: {
            type: 'object',
            properties: {
              image_a: { type: 'string', contentEncoding: 'base64' },
              image_b: { type: 'string', contentEncoding: 'base64' },
              image: { type: 'string', contentEncoding: 'base64' },
              visitor_id: { type: 'string', format: 'uuid' },
            },
          },
        },
      },
    };
  }
  return { required: true, content: { 'application/json': { schema: jsonSchema(body, 'input') } } };
}

function parameters(
  location: 'query' | 'path',
  schema: z.ZodObject | undefined,
): Record<string, unknown>[] {
  if (!schema) return [];
  const generated = jsonSchema(schema, 'input') as {
    properties?: Record<string, unknown>;
    required?: string[];
  };
  return Object.entries(generated.properties ?? {}).map(([name, property]) => ({
    name,
    in: location,
    required: location === 'path' || (generated.required ?? []).includes(name),
    schema: property,
  }));
}

/** Builds the OpenAPI 3.1 document from ROUTES. */
export function buildOpenApi(version: string): Record<string, unknown> {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const route of ROUTES) {
    const operation: Record<string, unknown> = {
      summary: route.summary,
      operationId: `${route.method}${route.path.replace(/[^A-Za-z0-9]+(.)?/g, (_, c: string | undefined) => (c ? c.toUpperCase() : ''))}`,
      parameters: [...parameters('path', route.pathParams), ...parameters('query', route.query)],
      responses: Object.fromEntries(
        Object.entries(route.responses).map(([status, response]) => [
          status,
          response.schema
            ? {
                description: response.description,
                content: { 'application/json': { schema: jsonSchema(response.schema, 'output') } },
              }
            : { description: response.description },
        ]),
      ),
    };
    if (route.body) operation.requestBody = requestBody(route.body);
    if (route.scope) {
      operation.security = [{ apiKey: [] }, { bearer: [] }];
      operation.description = `Requires an API key with the '${route.scope}' scope.`;
      const authResponses = {
        401: { description: 'Missing, unknown or revoked API key (UNAUTHENTICATED).' },
        403: { description: `The key lacks the '${route.scope}' scope (FORBIDDEN).` },
        429: { description: 'Rate limit of the key exceeded (RATE_LIMITED); Retry-After is set.' },
      };
      for (const [status, response] of Object.entries(authResponses)) {
        (operation.responses as Record<string, unknown>)[status] ??= {
          description: response.description,
          content: {
            'application/json': { schema: jsonSchema(responses.errorResponse, 'output') },
          },
        };
      }
    }
    paths[route.path] ??= {};
    paths[route.path]![route.method] = operation;
  }
  return {
    openapi: '3.1.0',
    info: {
      title: 'facegate',
      version,
      description:
        'Face recognition for visitor management: detection, identification among registered visitors, 1:1 verification, visitor and face management.',
    },
    paths,
    components: {
      securitySchemes: {
        apiKey: { type: 'apiKey', in: 'header', name: 'X-API-Key' },
        bearer: { type: 'http', scheme: 'bearer' },
      },
    },
  };
}
