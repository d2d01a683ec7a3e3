// Checks the container and monitoring files against the code they deploy,
// without Docker. It reads the compose file, the Prometheus scrape jobs, the
// Grafana provisioning and dashboard, the Dockerfile and .dockerignore. The two
// scripts the image runs (entrypoint and healthcheck) run here, with stand-ins
// for the apps.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import {
  accessSync,
  constants,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { createServer } from 'node:http';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join, posix, resolve } from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { parse } from 'yaml';

import { findRunningApp, probe, probeUrl } from '../docker/healthcheck.mjs';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const infraDir = join(root, 'infra');
const APP_SERVICES = ['gateway', 'inference-worker', 'matcher'];

function readText(path) {
  return readFileSync(join(root, path), 'utf8');
}

/** Parses YAML with merge keys (`<<: *anchor`), which Docker Compose supports. */
function readYaml(path) {
  return parse(readText(path), { merge: true });
}

const compose = readYaml('infra/docker-compose.yml');
const prometheus = readYaml('infra/prometheus/prometheus.yml');
const dashboard = JSON.parse(readText('infra/grafana/dashboards/facegate.json'));
const datasources = readYaml('infra/grafana/provisioning/datasources/prometheus.yml');
const dashboardProviders = readYaml('infra/grafana/provisioning/dashboards/facegate.yml');

// --- Documented configuration ---------------------------------------------

/** Returns the names of the environment variables that packages/config reads. */
function documentedVariables() {
  const source = readText('packages/config/src/variables.ts');
  return new Set([...source.matchAll(/variable\(\s*'([A-Z][A-Z0-9_]*)'/g)].map((m) => m[1]));
}

/** Returns the defaults as .env.example lists them (`# NAME=default`, generated from packages/config). */
function documentedDefaults() {
  const lines = readText('.env.example').matchAll(/^# ([A-Z][A-Z0-9_]*)=(.*)$/gm);
  return new Map([...lines].map((m) => [m[1], m[2]]));
}

// --- Compose ----------------------------------------------------------------

/** Splits a short volume entry `source:target[:mode]` into its parts. */
function parseVolume(entry) {
  const [source, target, mode] = entry.split(':');
  return { source, target, mode };
}

function volumesOf(service) {
  return (compose.services[service].volumes ?? []).map(parseVolume);
}

/** Resolves a bind-mount source of the compose file against the folder it lives in. */
function bindSourcePath(source) {
  return resolve(infraDir, source);
}

test('compose defines every service', () => {
  const services = Object.keys(compose.services ?? {});

  for (const name of ['postgres', 'redis', ...APP_SERVICES, 'prometheus', 'grafana'])
    assert.ok(services.includes(name), `service ${name} is missing from ${services.join(', ')}`);
});

test('compose services set image or build', () => {
  for (const [name, service] of Object.entries(compose.services)) {
    const hasImage = typeof service.image === 'string' && service.image.length > 0;
    const hasBuild = service.build !== undefined;

    assert.ok(hasImage || hasBuild, `service ${name} has neither image nor build`);
  }
});

test('compose builds the apps from the root', () => {
  for (const name of APP_SERVICES) {
    const { build } = compose.services[name];
    const context = resolve(infraDir, build.context);

    assert.equal(context, root, `${name} builds from ${context}`);
    assert.ok(existsSync(join(context, build.dockerfile ?? 'Dockerfile')));
    assert.deepEqual(compose.services[name].command, [name]);
  }
});

test('inference worker can scale', () => {
  const worker = compose.services['inference-worker'];

  assert.equal(worker.container_name, undefined, 'a fixed container_name blocks --scale');
  assert.equal(worker.ports, undefined, 'a host port blocks --scale');
  assert.equal(worker.deploy?.replicas, undefined, 'replicas come from --scale');
});

test('compose apps wait for healthy stores', () => {
  for (const name of APP_SERVICES) {
    const dependsOn = compose.services[name].depends_on ?? {};

    assert.equal(dependsOn.postgres?.condition, 'service_healthy', `${name} -> postgres`);
    assert.equal(dependsOn.redis?.condition, 'service_healthy', `${name} -> redis`);
  }
});

test('healthy dependencies define a healthcheck', () => {
  const dockerfileHasHealthcheck = /^HEALTHCHECK\s+(?!NONE)/m.test(readText('Dockerfile'));

  for (const [name, service] of Object.entries(compose.services)) {
    for (const [dependency, { condition }] of Object.entries(service.depends_on ?? {})) {
      if (condition !== 'service_healthy') continue;
      const target = compose.services[dependency];
      const fromImage = target.build !== undefined && dockerfileHasHealthcheck;

      assert.ok(target, `${name} depends on unknown service ${dependency}`);
      assert.ok(target.healthcheck?.test || fromImage, `${dependency} has no healthcheck`);
    }
  }
});

test('compose app environment is documented', () => {
  const documented = documentedVariables();

  for (const name of APP_SERVICES) {
    const unknown = Object.keys(compose.services[name].environment).filter(
      (key) => !documented.has(key),
    );

    assert.deepEqual(unknown, [], `${name} sets variables the apps do not read`);
  }
});

test('compose defaults match the documented ones', () => {
  const defaults = documentedDefaults();

  for (const name of APP_SERVICES) {
    for (const [key, value] of Object.entries(compose.services[name].environment)) {
      const interpolation = /^\$\{([A-Z0-9_]+):-(.+)\}$/.exec(String(value));
      if (!interpolation || interpolation[1] !== key) continue;

      assert.equal(interpolation[2], defaults.get(key), `${name}: default of ${key}`);
    }
  }
});

test('compose gateway listens on port 8000', () => {
  const gateway = compose.services.gateway;
  const published = gateway.ports.map((port) => String(port).split(':').at(-1));

  assert.equal(gateway.environment.HOST, '0.0.0.0');
  assert.equal(String(gateway.environment.PORT), '8000');
  assert.ok(published.includes('8000'), `gateway publishes ${gateway.ports.join(', ')}`);
});

test('compose exposes worker and matcher metrics', () => {
  for (const name of ['inference-worker', 'matcher']) {
    const environment = compose.services[name].environment;

    assert.equal(environment.METRICS_HOST, '0.0.0.0', `${name} metrics only on loopback`);
    assert.equal(String(environment.METRICS_PORT), '9464');
  }
});

test('compose redis persists queues', () => {
  const redis = compose.services.redis;
  const command = redis.command.join(' ');

  assert.match(redis.image, /^redis:7(\.|$)/);
  assert.match(command, /--appendonly yes/);
  assert.match(command, /--maxmemory-policy noeviction/);
  assert.ok(volumesOf('redis').some((volume) => volume.target === '/data'));
});

test('compose postgres is version 15', () => {
  const postgres = compose.services.postgres;
  const database = postgres.environment.POSTGRES_DB;
  const user = postgres.environment.POSTGRES_USER;
  const url = new URL(compose.services.gateway.environment.DATABASE_URL);
  const ownerUrl = new URL(compose.services.gateway.environment.DATABASE_MIGRATION_URL);

  assert.match(postgres.image, /^postgres:15(\.|-|$)/);
  assert.ok(volumesOf('postgres').some((v) => v.target === '/var/lib/postgresql/data'));
  assert.equal(url.hostname, 'postgres');
  assert.equal(url.pathname, `/${database}`);
  assert.equal(ownerUrl.username, user);
  assert.equal(ownerUrl.pathname, `/${database}`);
  // The service role is created by the init script and differs from the owner.
  assert.notEqual(url.username, user);
  assert.ok(volumesOf('postgres').some((v) => v.target.startsWith('/docker-entrypoint-initdb.d/')));
});

test('compose keeps state on named volumes', () => {
  const declared = Object.keys(compose.volumes ?? {});
  const cases = [
    ['matcher', 'INDEX_DIR'],
    ['inference-worker', 'MODELS_DIR'],
  ];

  for (const [service, variable] of cases) {
    const folder = compose.services[service].environment[variable];
    const volume = volumesOf(service).find((v) => v.target === folder);

    assert.ok(volume, `${service}: ${variable}=${folder} is not on a volume`);
    assert.ok(declared.includes(volume.source), `${volume.source} is not a named volume`);
  }
});

test('compose bind mounts exist', () => {
  for (const name of Object.keys(compose.services)) {
    for (const { source } of volumesOf(name)) {
      if (!source.startsWith('.')) continue;

      assert.ok(existsSync(bindSourcePath(source)), `${name} mounts missing ${source}`);
    }
  }
});

// --- Prometheus -------------------------------------------------------------

function scrapeJob(name) {
  const job = prometheus.scrape_configs.find((config) => config.job_name === name);
  assert.ok(job, `no scrape job named ${name}`);
  assert.ok([undefined, '/metrics'].includes(job.metrics_path), `${name} path ${job.metrics_path}`);
  return job;
}

function staticTargets(job) {
  return (job.static_configs ?? []).flatMap((config) => config.targets);
}

test('compose mounts the prometheus config', () => {
  const mount = volumesOf('prometheus').find((v) => v.target === '/etc/prometheus/prometheus.yml');

  assert.ok(mount, 'prometheus.yml is not mounted');
  assert.equal(bindSourcePath(mount.source), join(infraDir, 'prometheus', 'prometheus.yml'));
});

test('prometheus scrapes the gateway', () => {
  const port = compose.services.gateway.environment.PORT;

  assert.deepEqual(staticTargets(scrapeJob('gateway')), [`gateway:${port}`]);
});

test('prometheus scrapes every worker replica', () => {
  const job = scrapeJob('inference-worker');
  const port = Number(compose.services['inference-worker'].environment.METRICS_PORT);
  const lookups = job.dns_sd_configs ?? [];

  assert.equal(staticTargets(job).length, 0, 'a static target reaches one replica only');
  assert.equal(lookups.length, 1);
  assert.deepEqual(lookups[0].names, ['inference-worker']);
  assert.equal(lookups[0].type, 'A');
  assert.equal(lookups[0].port, port);
});

test('prometheus scrapes the matcher', () => {
  const port = compose.services.matcher.environment.METRICS_PORT;

  assert.deepEqual(staticTargets(scrapeJob('matcher')), [`matcher:${port}`]);
});

// --- Metric names -----------------------------------------------------------

const metricsSource = readText('packages/metrics/src/index.ts');
const metricPrefix = /METRIC_PREFIX = '([a-z_]+)'/.exec(metricsSource)?.[1];

/**
 * Collects the metric names and types declared in packages/metrics: collectors
 * built with a literal `${METRIC_PREFIX}name`, and the index gauges that
 * IndexMetrics builds through its local `gauge('name', ...)` helper.
 */
function declaredMetrics(source) {
  const metrics = new Map();
  const literal =
    /new (Counter|Gauge|Histogram|Summary)\(\{\s*name:\s*`\$\{METRIC_PREFIX\}([a-z0-9_]+)`/g;
  for (const [, type, name] of source.matchAll(literal))
    metrics.set(`${metricPrefix}${name}`, type.toLowerCase());
  for (const [, name] of source.matchAll(/\bgauge\(\s*'([a-z0-9_]+)'/g))
    metrics.set(`${metricPrefix}${name}`, 'gauge');
  return metrics;
}

/** Lists the prom-client default metrics as createRegistry() registers them, with the prefix. */
async function defaultMetrics() {
  const requireFromMetrics = createRequire(join(root, 'packages', 'metrics', 'package.json'));
  const { Registry, collectDefaultMetrics } = requireFromMetrics('prom-client');
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: metricPrefix });
  const metrics = await registry.getMetricsAsJSON();
  registry.clear();
  return new Map(metrics.map((metric) => [metric.name, metric.type]));
}

/**
 * Checks whether `series` names a series that the metrics expose. Counter names
 * carry their `_total` in the source, so it is never stripped. `_bucket` exists
 * only for histograms, and `_sum` and `_count` for histograms and summaries.
 */
function isExposedSeries(series, metrics) {
  if (metrics.has(series)) return true;
  const suffix = /_(bucket|sum|count)$/.exec(series);
  if (!suffix) return false;
  const type = metrics.get(series.slice(0, -suffix[0].length));
  return suffix[1] === 'bucket' ? type === 'histogram' : ['histogram', 'summary'].includes(type);
}

/** Extracts the series names with the metric prefix from a PromQL expression, skipping quoted label values. */
function seriesNames(expr) {
  const withoutStrings = expr.replace(/"(?:[^"\\]|\\.)*"/g, '""');
  const names = new RegExp(`\\b${metricPrefix}[A-Za-z0-9_:]*`, 'g');
  return [...new Set(withoutStrings.match(names) ?? [])];
}

test('metric parser finds declared names', () => {
  const metrics = declaredMetrics(metricsSource);

  assert.equal(metricPrefix, 'facegate_');
  assert.equal(metrics.get('facegate_stage_duration_seconds'), 'histogram');
  assert.equal(metrics.get('facegate_jobs_total'), 'counter');
  assert.equal(metrics.get('facegate_queue_jobs'), 'gauge');
  assert.equal(metrics.get('facegate_index_faces'), 'gauge');
  assert.equal(metrics.get('facegate_stream_frames_total'), 'counter');
});

test('series check handles suffixes', () => {
  const metrics = new Map([
    ['facegate_stage_duration_seconds', 'histogram'],
    ['facegate_jobs_total', 'counter'],
  ]);

  assert.ok(isExposedSeries('facegate_stage_duration_seconds_bucket', metrics));
  assert.ok(isExposedSeries('facegate_stage_duration_seconds_count', metrics));
  assert.ok(isExposedSeries('facegate_jobs_total', metrics));
  assert.ok(!isExposedSeries('facegate_jobs', metrics));
  assert.ok(!isExposedSeries('facegate_jobs_total_bucket', metrics));
  assert.ok(!isExposedSeries('facegate_stage_duration_seconds_total', metrics));
  assert.deepEqual(seriesNames('sum(facegate_a{x="facegate_b"}) / facegate_c_total'), [
    'facegate_a',
    'facegate_c_total',
  ]);
});

// --- Grafana ----------------------------------------------------------------

/** Lists every panel of the dashboard, including panels inside collapsed rows. */
function panels() {
  return dashboard.panels.flatMap((panel) => [panel, ...(panel.panels ?? [])]);
}

function expressions() {
  return panels().flatMap((panel) => (panel.targets ?? []).map((target) => target.expr));
}

test('dashboard panels all have queries', () => {
  const ids = panels().map((panel) => panel.id);

  assert.ok(panels().length > 0);
  assert.equal(new Set(ids).size, ids.length, 'panel ids repeat');
  for (const panel of panels()) {
    assert.ok(panel.targets?.length > 0, `panel '${panel.title}' has no target`);
    for (const target of panel.targets)
      assert.ok(target.expr?.trim(), `panel '${panel.title}' has an empty query`);
  }
});

test('dashboard uses the provisioned datasource', () => {
  const uid = datasources.datasources[0].uid;

  for (const panel of panels()) {
    assert.equal(panel.datasource?.uid, uid, `panel '${panel.title}'`);
    for (const target of panel.targets) assert.equal(target.datasource?.uid, uid);
  }
});

test('dashboard uses only exposed metrics', async () => {
  const metrics = new Map([...declaredMetrics(metricsSource), ...(await defaultMetrics())]);

  const unknown = expressions()
    .flatMap(seriesNames)
    .filter((series) => !isExposedSeries(series, metrics));

  assert.deepEqual(unknown, []);
});

test('dashboard covers the service views', () => {
  const all = expressions().join('\n');
  const stageQuantiles = expressions().filter((expr) =>
    /facegate_stage_duration_seconds_bucket/.test(expr),
  );
  const required = [
    /sum by \(route, status\) \(rate\(facegate_http_requests_total/,
    /by \(queue, state\) \(facegate_queue_jobs\)/,
    /sum by \(code\) \(rate\(facegate_errors_total/,
    /by \([^)]*outcome[^)]*\) \(rate\(facegate_jobs_total/,
    /facegate_index_faces/,
    /facegate_index_capacity/,
    /facegate_index_deleted_faces/,
    /facegate_stream_connections/,
    /sum by \(outcome\) \(rate\(facegate_stream_frames_total/,
    /rate\(facegate_process_cpu_seconds_total/,
    /facegate_process_resident_memory_bytes/,
  ];

  for (const quantile of ['0.5', '0.95', '0.99']) {
    const found = stageQuantiles.some((expr) =>
      expr.startsWith(`histogram_quantile(${quantile}, sum by (le, stage) (`),
    );
    assert.ok(found, `no p${Number(quantile) * 100} per stage`);
  }
  for (const pattern of required) assert.match(all, pattern);
});

test('grafana provisioning points at the dashboards', () => {
  const provider = dashboardProviders.providers[0];
  const mount = volumesOf('grafana').find((v) => v.target === provider.options.path);

  assert.equal(provider.type, 'file');
  assert.ok(mount, `nothing is mounted at ${provider.options.path}`);
  assert.equal(bindSourcePath(mount.source), join(infraDir, 'grafana', 'dashboards'));
  assert.ok(readdirSync(bindSourcePath(mount.source)).includes('facegate.json'));
});

test('grafana mounts its provisioning', () => {
  const mount = volumesOf('grafana').find((v) => v.target === '/etc/grafana/provisioning');

  assert.ok(mount, 'provisioning is not mounted');
  assert.equal(bindSourcePath(mount.source), join(infraDir, 'grafana', 'provisioning'));
});

test('grafana datasource is the prometheus service', () => {
  const url = new URL(datasources.datasources[0].url);
  const published = compose.services.prometheus.ports.map((p) => String(p).split(':').at(-1));

  assert.equal(datasources.datasources[0].type, 'prometheus');
  assert.equal(url.hostname, 'prometheus');
  assert.ok(published.includes(url.port), `prometheus listens on ${published.join(', ')}`);
});

// --- Dockerfile -------------------------------------------------------------

/** Parses the instructions of a Dockerfile into { keyword, args }, joining continued lines. */
function parseDockerfile(text) {
  const instructions = [];
  let pending = '';
  for (const line of text.split('\n')) {
    if (/^\s*#/.test(line)) continue;
    pending += line.replace(/\\\s*$/, ' ');
    if (/\\\s*$/.test(line)) continue;
    const match = /^\s*([A-Za-z]+)\s+(.*)$/.exec(pending);
    if (match) instructions.push({ keyword: match[1].toUpperCase(), args: match[2].trim() });
    pending = '';
  }
  return instructions;
}

/** Groups instructions into stages, resolving ${ARG} in FROM with the global ARG defaults. */
function dockerStages(instructions) {
  const globalArgs = new Map();
  const stages = [];
  for (const instruction of instructions) {
    if (instruction.keyword === 'FROM') {
      const [image, , name] = instruction.args
        .replace(/\$\{(\w+)\}/g, (_, arg) => globalArgs.get(arg) ?? '')
        .split(/\s+/);
      stages.push({ image, name, instructions: [] });
    } else if (stages.length === 0 && instruction.keyword === 'ARG') {
      const [arg, value] = instruction.args.split('=');
      globalArgs.set(arg, value);
    } else if (stages.length > 0) {
      stages.at(-1).instructions.push(instruction);
    }
  }
  return stages;
}

/** Splits the arguments of COPY or ADD into flags, sources and destination. */
function copyParts(args) {
  const words = args.split(/\s+/);
  const flags = words.filter((word) => word.startsWith('--'));
  const paths = words.filter((word) => !word.startsWith('--'));
  return { flags, sources: paths.slice(0, -1), destination: paths.at(-1) };
}

function flagValue(flags, name) {
  return flags.find((flag) => flag.startsWith(`--${name}=`))?.split('=')[1];
}

/** Lists the folders that a RUN of `stage` fills with `pnpm install --prod`. */
function productionInstallDirs(stage) {
  const dirs = [];
  let workdir = '/';
  for (const { keyword, args } of stage.instructions) {
    if (keyword === 'WORKDIR') workdir = posix.resolve(workdir, args);
    if (keyword !== 'RUN') continue;
    for (const command of args.split(/&&|;/)) {
      if (!/\bpnpm install\b/.test(command) || !/--prod\b/.test(command)) continue;
      assert.match(command, /--frozen-lockfile/, 'the production install must use the lockfile');
      const dir = /--dir[ =](\S+)/.exec(command)?.[1];
      dirs.push(dir ? posix.resolve(workdir, dir) : workdir);
    }
  }
  return dirs;
}

const dockerfile = readText('Dockerfile');
const stages = dockerStages(parseDockerfile(dockerfile));
const finalStage = stages.at(-1);

function finalInstructions(keyword) {
  return finalStage.instructions.filter((instruction) => instruction.keyword === keyword);
}

/** Maps a path inside the image's /app to the repository file it comes from. */
function repositoryPathOf(imagePath) {
  assert.ok(imagePath.startsWith('/app/'), `${imagePath} is outside /app`);
  return join(root, imagePath.slice('/app/'.length));
}

test('dockerfile builds in two stages', () => {
  assert.ok(stages.length >= 2, `found ${stages.length} FROM stage(s)`);
  assert.equal(stages[0].image, 'node:20-bookworm-slim');
  assert.equal(finalStage.image, 'node:20-bookworm-slim');
  assert.match(stages[0].instructions.map((i) => i.args).join('\n'), /python3 make g\+\+/);
});

test('dockerfile pins the pnpm of package.json', () => {
  const packageManager = JSON.parse(readText('package.json')).packageManager;
  const pinned = stages
    .flatMap((stage) => stage.instructions)
    .find((i) => i.keyword === 'ARG' && i.args.startsWith('PNPM_VERSION='));

  assert.ok(pinned, 'no ARG PNPM_VERSION');
  assert.equal(`pnpm@${pinned.args.split('=')[1]}`, packageManager);
});

test('dockerfile ships production dependencies only', () => {
  const copies = [...finalInstructions('COPY'), ...finalInstructions('ADD')];
  const installs = finalInstructions('RUN').filter((run) =>
    /\b(pnpm install|pnpm i|npm install|npm ci)\b/.test(run.args),
  );

  assert.ok(copies.length > 0, 'the final stage copies nothing');
  assert.deepEqual(installs, [], 'the final stage must not install dependencies itself');
  for (const { args } of copies) {
    const { flags, sources } = copyParts(args);
    const from = stages.find((stage) => stage.name === flagValue(flags, 'from'));
    assert.ok(from, `'${args}' does not copy from an earlier stage`);
    const productionDirs = productionInstallDirs(from);
    assert.ok(productionDirs.length > 0, `stage ${from.name} has no pnpm install --prod`);

    for (const source of sources) {
      const inside = productionDirs.some((dir) => source === dir || source.startsWith(`${dir}/`));
      assert.ok(inside, `${source} is outside the production install ${productionDirs}`);
    }
  }
});

test('dockerfile ships the model calibration', () => {
  // The default embedder is quantized when it loads, from the ranges in models/calibration.
  const runs = stages.flatMap((stage) => stage.instructions).filter((i) => i.keyword === 'RUN');

  assert.ok(
    runs.some(({ args }) => /\bcp -R models\/calibration \/out\/models\//.test(args)),
    'no RUN copies models/calibration into the production tree',
  );
});

test('dockerfile never copies weights or photos', () => {
  const all = stages.flatMap((stage) => stage.instructions);

  for (const { keyword, args } of all) {
    if (['COPY', 'ADD'].includes(keyword)) {
      for (const source of copyParts(args).sources) {
        assert.doesNotMatch(source, /models\/files|(^|\/)\.\.(\/|$)|shared/, `${keyword} ${args}`);
      }
    }
    assert.doesNotMatch(args, /models\/files|\.\.\/shared/, `${keyword} ${args}`);
  }
});

test('dockerfile runs as a non-root user', () => {
  const user = finalInstructions('USER').at(-1)?.args;

  assert.ok(user, 'the final stage sets no USER');
  assert.doesNotMatch(user, /^(root|0)(:|$)/);
});

test('dockerfile has a healthcheck', () => {
  const healthcheck = finalInstructions('HEALTHCHECK').at(-1)?.args ?? '';

  assert.match(healthcheck, /^(--\S+\s+)*CMD \[/, 'the final stage has no HEALTHCHECK CMD');
  const command = JSON.parse(healthcheck.slice(healthcheck.indexOf('[')));
  assert.equal(command[0], 'node');
  assert.ok(existsSync(repositoryPathOf(command[1])), `${command[1]} does not exist`);
});

test('dockerfile starts the gateway by default', () => {
  const entrypointArgs = finalInstructions('ENTRYPOINT').at(-1)?.args;
  const commandArgs = finalInstructions('CMD').at(-1)?.args;
  assert.ok(entrypointArgs && commandArgs, 'the final stage needs ENTRYPOINT and CMD');
  const entrypoint = JSON.parse(entrypointArgs);
  const command = JSON.parse(commandArgs);
  const script = repositoryPathOf(entrypoint[0]);

  assert.deepEqual(command, ['gateway']);
  assert.doesNotThrow(() => accessSync(script, constants.X_OK), `${script} is not executable`);
});

// --- .dockerignore ----------------------------------------------------------

/** Converts a .dockerignore pattern to a RegExp over slash-separated paths. */
function ignorePatternRegex(pattern) {
  let source = '';
  for (let i = 0; i < pattern.length; i += 1) {
    const char = pattern[i];
    if (char === '*' && pattern[i + 1] === '*') {
      const slash = pattern[i + 2] === '/';
      source += slash ? '(?:.*/)?' : '.*';
      i += slash ? 2 : 1;
    } else if (char === '*') {
      source += '[^/]*';
    } else if (char === '?') {
      source += '[^/]';
    } else {
      source += char.replace(/[.+^${}()|[\]\\]/g, '\\$&');
    }
  }
  return new RegExp(`^${source}$`);
}

/** Checks whether the build context leaves `path` out. The last pattern that matches it or a parent folder wins. */
function isIgnored(path, ignoreText) {
  const rules = ignoreText
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line && !line.startsWith('#'))
    .map((line) => ({
      negated: line.startsWith('!'),
      regex: ignorePatternRegex(line.replace(/^!/, '').replace(/^\/|\/$/g, '')),
    }));
  const parts = path.split('/');
  const prefixes = parts.map((_, i) => parts.slice(0, i + 1).join('/'));
  let ignored = false;
  for (const rule of rules) {
    if (prefixes.some((prefix) => rule.regex.test(prefix))) ignored = !rule.negated;
  }
  return ignored;
}

test('dockerignore leaves out generated files', () => {
  const ignoreText = readText('.dockerignore');
  const excluded = [
    'node_modules/pnpm/package.json',
    'apps/gateway/node_modules/express',
    'packages/vision/dist/src/index.js',
    'apps/matcher/tsconfig.tsbuildinfo',
    'models/files/face_detection_yunet_2026may.onnx',
    'var/index/manifest.json',
    '.git/HEAD',
    '.env',
  ];
  const included = [
    'package.json',
    'pnpm-lock.yaml',
    'pnpm-workspace.yaml',
    '.npmrc',
    'models/manifest.json',
    'models/fetch.mjs',
    'models/calibration/mobilefacenet_foamliu_128d.json',
    'infra/docker/entrypoint.sh',
    'infra/docker/healthcheck.mjs',
    'apps/gateway/src/main.ts',
  ];

  for (const path of excluded) assert.ok(isIgnored(path, ignoreText), `${path} is sent`);
  for (const path of included) assert.ok(!isIgnored(path, ignoreText), `${path} is left out`);
});

// --- Entrypoint -------------------------------------------------------------

const scratchDirs = [];
after(() => {
  for (const dir of scratchDirs) rmSync(dir, { recursive: true, force: true });
});

/**
 * Lays out a copy of the entrypoint in a scratch folder with stand-ins for
 * models/fetch.mjs and each app's main.js that append a line to trace.log, beside each
 * app's real package.json. A stand-in main.js also writes its Node flags to flags.log and
 * its scheduling policy (field 41 of /proc/self/stat) to policy.log.
 */
function entrypointSandbox() {
  const dir = mkdtempSync(join(tmpdir(), 'facegate-entrypoint-'));
  scratchDirs.push(dir);
  const trace = join(dir, 'trace.log');
  mkdirSync(join(dir, 'infra', 'docker'), { recursive: true });
  mkdirSync(join(dir, 'models'));
  copyFileSync(
    join(infraDir, 'docker', 'entrypoint.sh'),
    join(dir, 'infra', 'docker', 'entrypoint.sh'),
  );
  writeFileSync(
    join(dir, 'models', 'fetch.mjs'),
    `import { appendFileSync } from 'node:fs';
appendFileSync(${JSON.stringify(trace)}, 'fetch ' + process.env.MODELS_DIR + '\\n');
process.exit(Number(process.env.FAKE_FETCH_EXIT ?? 0));
`,
  );
  const flags = join(dir, 'flags.log');
  const policy = join(dir, 'policy.log');
  for (const app of APP_SERVICES) {
    mkdirSync(join(dir, 'apps', app, 'dist', 'src'), { recursive: true });
    copyFileSync(join(root, 'apps', app, 'package.json'), join(dir, 'apps', app, 'package.json'));
    writeFileSync(
      join(dir, 'apps', app, 'dist', 'src', 'main.js'),
      `import { appendFileSync, readFileSync } from 'node:fs';
appendFileSync(${JSON.stringify(trace)}, ['main', ${JSON.stringify(app)}, ...process.argv.slice(2)].join(' ') + '\\n');
appendFileSync(${JSON.stringify(flags)}, [${JSON.stringify(app)}, ...process.execArgv].join(' ') + '\\n');
const stat = readFileSync('/proc/self/stat', 'utf8');
appendFileSync(${JSON.stringify(policy)}, stat.slice(stat.lastIndexOf(') ') + 2).split(' ')[38] + '\\n');
`,
    );
  }
  const flagLines = () => readFileSync(flags, 'utf8').trim().split('\n');
  const policyLines = () => readFileSync(policy, 'utf8').trim().split('\n');
  const run = (args, env = {}) =>
    spawnSync('sh', [join(dir, 'infra', 'docker', 'entrypoint.sh'), ...args], {
      encoding: 'utf8',
      env: { PATH: process.env.PATH, MODELS_DIR: join(dir, 'volume', 'models'), ...env },
    });
  const traceLines = () =>
    existsSync(trace) ? readFileSync(trace, 'utf8').trim().split('\n') : [];
  return { dir, run, traceLines, flagLines, policyLines };
}

test('entrypoint starts the named app', () => {
  const sandbox = entrypointSandbox();

  const result = sandbox.run(['gateway', '--example']);

  assert.equal(result.status, 0, result.stderr);
  assert.deepEqual(sandbox.traceLines(), ['main gateway --example']);
});

test('entrypoint passes each app its Node flags', () => {
  const sandbox = entrypointSandbox();
  const gatewayFlags = JSON.parse(
    readFileSync(join(root, 'apps', 'gateway', 'package.json'), 'utf8'),
  ).facegate.nodeFlags;

  const gateway = sandbox.run(['gateway']);
  const matcher = sandbox.run(['matcher']);

  assert.equal(gateway.status, 0, gateway.stderr);
  assert.equal(matcher.status, 0, matcher.stderr);
  assert.ok(gatewayFlags.length > 0, 'the gateway lists Node flags in its package.json');
  assert.deepEqual(sandbox.flagLines(), [
    ['gateway', ...gatewayFlags, '--enable-source-maps'].join(' '),
    'matcher --enable-source-maps',
  ]);
});

const SCHED_OTHER = '0';
const SCHED_BATCH = '3';

test(
  'entrypoint runs apps under SCHED_BATCH',
  {
    skip:
      spawnSync('chrt', ['--batch', '0', 'true']).status === 0
        ? false
        : 'chrt cannot set SCHED_BATCH on this machine',
  },
  () => {
    const sandbox = entrypointSandbox();

    const batch = sandbox.run(['gateway']);
    const off = sandbox.run(['gateway'], { FACEGATE_SCHED_BATCH: 'off' });

    assert.equal(batch.status, 0, batch.stderr);
    assert.equal(off.status, 0, off.stderr);
    assert.deepEqual(sandbox.policyLines(), [SCHED_BATCH, SCHED_OTHER]);
  },
);

test('entrypoint fetches models for workers', () => {
  const sandbox = entrypointSandbox();
  const modelsDir = join(sandbox.dir, 'volume', 'models');

  const result = sandbox.run(['inference-worker']);

  assert.equal(result.status, 0, result.stderr);
  assert.deepEqual(sandbox.traceLines(), [`fetch ${modelsDir}`, 'main inference-worker']);
  assert.ok(existsSync(join(modelsDir, '.fetch.lock')));
});

test('entrypoint stops when the fetch fails', () => {
  const sandbox = entrypointSandbox();

  const result = sandbox.run(['inference-worker'], { FAKE_FETCH_EXIT: '1' });

  assert.equal(result.status, 1);
  assert.deepEqual(sandbox.traceLines(), [`fetch ${join(sandbox.dir, 'volume', 'models')}`]);
});

test('entrypoint rejects an unknown app', () => {
  const sandbox = entrypointSandbox();

  for (const args of [['worker'], []]) {
    const result = sandbox.run(args);

    assert.equal(result.status, 64);
    assert.match(result.stderr, /expected gateway, inference-worker or matcher/);
    assert.deepEqual(sandbox.traceLines(), []);
  }
});

// --- Healthcheck --------------------------------------------------------------

/** Writes a fake /proc with one folder per process id and its NUL-separated command line. */
function fakeProc(processes) {
  const dir = mkdtempSync(join(tmpdir(), 'facegate-proc-'));
  scratchDirs.push(dir);
  mkdirSync(join(dir, 'self'));
  for (const [pid, argv] of Object.entries(processes)) {
    mkdirSync(join(dir, pid));
    if (argv) writeFileSync(join(dir, pid, 'cmdline'), `${argv.join('\0')}\0`);
  }
  return dir;
}

test('healthcheck finds the running app', () => {
  const proc = fakeProc({
    1: ['/sbin/docker-init', '--', '/app/infra/docker/entrypoint.sh', 'matcher'],
    7: null,
    8: ['node', '--enable-source-maps', '/app/apps/matcher/dist/src/main.js'],
  });
  const empty = fakeProc({ 1: ['sh', '/app/infra/docker/entrypoint.sh', 'inference-worker'] });

  assert.equal(findRunningApp(proc), 'matcher');
  assert.equal(findRunningApp(empty), undefined);
});

test('healthcheck probes the app endpoint', () => {
  assert.equal(probeUrl('gateway', { PORT: '8100' }), 'http://127.0.0.1:8100/health');
  assert.equal(probeUrl('gateway', {}), 'http://127.0.0.1:8000/health');
  assert.equal(probeUrl('matcher', {}), 'http://127.0.0.1:9464/metrics');
  assert.equal(
    probeUrl('inference-worker', { METRICS_PORT: '9470' }),
    'http://127.0.0.1:9470/metrics',
  );
  assert.equal(probeUrl('inference-worker', { METRICS_PORT: '0' }), undefined);
});

test('healthcheck probe reports failures', async () => {
  const server = createServer((request, response) => {
    response.writeHead(request.url === '/health' ? 200 : 503).end();
  });
  await new Promise((resolveListen) => server.listen(0, '127.0.0.1', resolveListen));
  const base = `http://127.0.0.1:${server.address().port}`;

  const healthy = await probe(`${base}/health`);
  const unhealthy = await probe(`${base}/metrics`);
  await new Promise((resolveClose) => server.close(resolveClose));
  const closed = await probe(`${base}/health`);

  assert.equal(healthy, undefined);
  assert.match(unhealthy, /HTTP 503/);
  assert.match(closed, /did not answer/);
});
