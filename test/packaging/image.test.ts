// The container image, checked without Docker (no engine here): the Dockerfile read as data (stages, what each copies,
// user, ports, entrypoint) agrees with package.json, the lockfile, .dockerignore, the chart and deploy/; and the build
// stage's output, laid out as the runtime stage lays it out (/app/dist + /app/package.json), runs, and imports
// nothing but runtime dependencies, so `npm ci --omit=dev` is all the image needs.
import { execFile } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { copyFile, mkdtemp, readdir, readFile, rm, symlink } from 'node:fs/promises';
import { builtinModules } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { CHART, REPO } from './render.ts';

const run = promisify(execFile);
const read = (file: string): string => readFileSync(join(REPO, file), 'utf8');
const pkg = JSON.parse(read('package.json')) as { scripts: Record<string, string>; dependencies: Record<string, string>; devDependencies: Record<string, string> };

interface Stage { from: string; name: string | undefined; lines: string[] }

/** The Dockerfile's stages with global ARG defaults substituted; continuation lines joined. */
function stages(text: string): Stage[] {
  const lines = text.replace(/\\\n/g, ' ').split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
  const args: Record<string, string> = {};
  const out: Stage[] = [];
  for (const line of lines) {
    const arg = /^ARG (\w+)=(\S+)$/.exec(line);
    if (arg && out.length === 0) args[arg[1]!] = arg[2]!;
    const from = /^FROM (?:--platform=\S+ )?(\S+)(?: AS (\S+))?$/i.exec(line);
    if (from) out.push({ from: from[1]!.replace(/\$\{(\w+)\}/g, (_, name: string) => args[name] ?? ''), name: from[2], lines: [] });
    else out.at(-1)?.lines.push(line);
  }
  return out;
}

/** Whether .dockerignore keeps `path` in the build context (last matching pattern wins; `!` re-includes). */
function inContext(path: string, ignore: string): boolean {
  let included = true;
  for (const raw of ignore.split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'))) {
    const negate = raw.startsWith('!');
    const pattern = negate ? raw.slice(1) : raw;
    // eslint-disable-next-line no-control-regex -- \u0000 is a placeholder for ** while the glob is translated
    const regex = new RegExp(`^${pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*\*/g, '\u0000').replace(/\*/g, '[^/]*').replace(/\u0000/g, '.*').replace(/\?/g, '[^/]')}(/.*)?$`);
    if (regex.test(path)) included = negate;
  }
  return included;
}

describe('Dockerfile (read as data: no Docker engine here)', () => {
  const dockerfile = stages(read('Dockerfile'));
  const byName = (name: string): Stage => dockerfile.find((s) => s.name === name)!;
  const runtime = dockerfile.at(-1)!;

  it('builds on node:24-bookworm-slim and runs on distroless Node 24 as uid 65532, entrypoint node dist/main.js, cmd serve', () => {
    expect(dockerfile.map((s) => [s.name, s.from])).toEqual([
      ['build', 'node:24-bookworm-slim'],
      ['prod-deps', 'node:24-bookworm-slim'],
      [undefined, 'gcr.io/distroless/nodejs24-debian12:nonroot'],
    ]);
    expect(runtime.lines).toContain('USER 65532:65532');
    expect(runtime.lines).toContain('ENTRYPOINT ["/nodejs/bin/node", "--enable-source-maps", "--max-semi-space-size=1", "/app/dist/main.js"]');
    expect(runtime.lines).toContain('CMD ["serve"]');
    expect(runtime.lines).toContain('EXPOSE 8080 9090');
    expect(runtime.lines.some((l) => l.startsWith('RUN'))).toBe(false); // distroless: no shell at run time
  });

  it('build: npm ci + npm run build (= tsc -p tsconfig.build.json into dist/); prod-deps: npm ci --omit=dev in a clean stage', () => {
    expect(byName('build').lines.filter((l) => l.startsWith('RUN'))).toEqual(['RUN --mount=type=cache,target=/root/.npm npm ci', 'RUN npm run build']);
    expect(pkg.scripts.build).toBe('tsc -p tsconfig.build.json');
    expect((JSON.parse(read('tsconfig.build.json')) as { compilerOptions: { outDir: string } }).compilerOptions.outDir).toBe('dist');
    expect(byName('prod-deps').lines.filter((l) => l.startsWith('RUN'))).toEqual(['RUN --mount=type=cache,target=/root/.npm npm ci --omit=dev --ignore-scripts']);
    // Only the runtime dependencies reach the image, never the build's node_modules.
    expect(runtime.lines.filter((l) => l.startsWith('COPY'))).toEqual([
      'COPY --from=prod-deps /src/node_modules ./node_modules',
      'COPY --from=build /src/dist ./dist',
      'COPY package.json ./',
    ]);
  });

  it('the `node` devDependency and every other dev tool stay out; no runtime dependency needs an install script', () => {
    expect(pkg.devDependencies.node).toBeDefined();
    expect(pkg.dependencies.node).toBeUndefined();
    const lock = JSON.parse(read('package-lock.json')) as { packages: Record<string, { dev?: boolean; hasInstallScript?: boolean }> };
    const scripted = Object.entries(lock.packages).filter(([path, p]) => path && !p.dev && p.hasInstallScript).map(([path]) => path);
    expect(scripted).toEqual([]); // so --ignore-scripts in prod-deps changes nothing
  });

  it('.dockerignore keeps exactly what the build copies and leaves node_modules, dist, .git and tests out', () => {
    const ignore = read('.dockerignore');
    const copied = dockerfile.flatMap((s) => s.lines).filter((l) => l.startsWith('COPY') && !l.includes('--from')).flatMap((l) => l.split(/\s+/).slice(1, -1));
    expect(copied.sort()).toEqual(['package-lock.json', 'package-lock.json', 'package.json', 'package.json', 'package.json', 'src', 'tsconfig.build.json', 'tsconfig.json']);
    for (const path of [...new Set(copied), 'src/main.ts', 'src/k8s/kube-config.ts']) expect(inContext(path, ignore), path).toBe(true);
    for (const path of ['node_modules', 'node_modules/pino/package.json', 'dist/main.js', '.git/HEAD', 'test/packaging/chart.test.ts', 'charts/registry-notifier/values.yaml', '.env']) {
      expect(inContext(path, ignore), path).toBe(false);
    }
  });

  it('the chart and deploy/ run the image as its user on its ports', () => {
    const values = parse(readFileSync(join(CHART, 'values.yaml'), 'utf8')) as { podSecurityContext: { runAsUser: number; runAsGroup: number } };
    expect(`USER ${values.podSecurityContext.runAsUser}:${values.podSecurityContext.runAsGroup}`).toBe('USER 65532:65532');
    const deployment = parse(read('deploy/deployment.yaml')) as { spec: { template: { spec: { securityContext: { runAsUser: number }; containers: { ports: { containerPort: number }[] }[] } } } };
    expect(deployment.spec.template.spec.securityContext.runAsUser).toBe(65532);
    expect(deployment.spec.template.spec.containers[0]!.ports.map((p) => p.containerPort)).toEqual([8080, 9090]);
  });
});

describe('the build stage\'s output in the runtime layout', () => {
  let app: string;

  beforeAll(async () => {
    app = join(await mkdtemp(join(tmpdir(), 'image-layout-')), 'app');
    const started = performance.now();
    // What `npm run build` does, into the layout's dist/ (tsc from node_modules, as npm run puts it on PATH).
    await run(process.execPath, [join(REPO, 'node_modules/typescript/bin/tsc'), '-p', join(REPO, 'tsconfig.build.json'), '--outDir', join(app, 'dist')], { timeout: 120_000 });
    console.log(`[measure] tsc -p tsconfig.build.json: ${(performance.now() - started).toFixed(0)} ms`);
    await copyFile(join(REPO, 'package.json'), join(app, 'package.json'));
    await symlink(join(REPO, 'node_modules'), join(app, 'node_modules'));
  }, 120_000);

  afterAll(async () => {
    if (app) await rm(join(app, '..'), { recursive: true, force: true });
  });

  it('runs: `version` reads package.json beside dist/, `serve --help` lists the flags, a bad flag exits 2', async () => {
    const main = join(app, 'dist/main.js');
    expect((await run(process.execPath, ['--enable-source-maps', main, 'version'])).stdout).toBe(`registry-notifier ${(JSON.parse(read('package.json')) as { version: string }).version}\n`);
    expect((await run(process.execPath, [main, 'serve', '--help'])).stdout).toContain('--kubernetes');
    const bad = await run(process.execPath, [main, 'serve', '--kubernetes', '--no-such-flag']).catch((e: { code: number; stderr: string }) => e);
    expect(bad).toMatchObject({ code: 2 });
  });

  it('imports only Node built-ins and runtime dependencies (so `npm ci --omit=dev` suffices)', async () => {
    const files = (await readdir(join(app, 'dist'), { recursive: true })).filter((f) => f.endsWith('.js'));
    const packages = new Set<string>();
    for (const file of files) {
      const text = await readFile(join(app, 'dist', file), 'utf8');
      for (const [, spec] of text.matchAll(/(?:^|\s)(?:import|export)\s[^'"]*?from\s+['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)/gm)) {
        if (!spec || spec.startsWith('.')) continue;
        packages.add(spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0]!);
      }
    }
    const builtin = new Set(builtinModules.flatMap((m) => [m, `node:${m}`]));
    const external = [...packages].filter((p) => !builtin.has(p) && !p.startsWith('node:')).sort();
    expect(external.length).toBeGreaterThan(0);
    for (const name of external) expect(pkg.dependencies[name], `${name} is imported at run time but is not a dependency`).toBeDefined();
    expect(readdirSync(join(app, 'dist')).includes('main.js')).toBe(true);
  });
});
