import { createRequire } from 'node:module';
import { dirname } from 'node:path';

import express, { type Router } from 'express';

// swagger-ui-dist ships no types; only the folder of its static assets is needed.
const assetsDir = dirname(createRequire(import.meta.url).resolve('swagger-ui-dist/package.json'));

/** Serves Swagger UI (from the swagger-ui-dist package, no CDN) for the document at `specUrl`. */
export function swaggerUiRouter(specUrl: string): Router {
  const router = express.Router();
  const page = `<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>facegate API</title><link rel="stylesheet" href="swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="swagger-ui-bundle.js"></script>
<script src="init.js"></script>
</body>
</html>`;
  router.get('/', (request, response) => {
    // Relative asset URLs need the trailing slash.
    if (!request.originalUrl.endsWith('/')) {
      response.redirect(301, `${request.originalUrl}/`);
      return;
    }
    response.type('html').send(page);
  });
  router.get('/init.js', (_request, response) => {
    response
      .type('application/javascript')
      .send(
        `window.ui = SwaggerUIBundle({ url: ${JSON.stringify(specUrl)}, dom_id: '#swagger-ui' });`,
      );
  });
  router.use(express.static(assetsDir, { index: false }));
  return router;
}
