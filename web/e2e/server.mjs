// A `shop serve` of the test's own: a fresh database (migrated and seeded), every role on free
// ports, the local payment gateway, a media directory of its own, and the built front-end from
// SHOP_WEB_DIR.
import { spawn, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

const PG = { host: '127.0.0.1', port: '5432', user: 'postgres' };

export function psql(database, sql) {
  return execFileSync('psql', ['-h', PG.host, '-p', PG.port, '-U', PG.user, '-d', database, '-AtqX', '-v', 'ON_ERROR_STOP=1', '-c', sql], {
    encoding: 'utf8',
  }).trim();
}

export async function startShop({ bin, webDir }) {
  // `shop_test_` prefix: scripts/test.sh drops such databases left by interrupted runs
  const database = `shop_test_web_${process.pid}_${randomBytes(3).toString('hex')}`;
  // product images' objects: a directory of the run's own, removed at the end
  const mediaDir = mkdtempSync(join(tmpdir(), 'shop-web-media-'));
  const env = {
    ...process.env,
    DATABASE_URL: `postgres://${PG.user}@${PG.host}:${PG.port}/${database}`,
    SHOP_COMMAND_API_ADDR: '127.0.0.1:0',
    SHOP_QUERY_API_ADDR: '127.0.0.1:0',
    SHOP_WEB_DIR: webDir,
    SHOP_MEDIA_DIR: mediaDir,
    SHOP_PAYMENT_GATEWAY: 'local',
    SHOP_JWT_SECRET: randomBytes(32).toString('hex'),
    SHOP_LOG_FORMAT: 'json',
    RUST_LOG: process.env.RUST_LOG || 'warn',
  };
  execFileSync(bin, ['migrate'], { env, stdio: ['ignore', 'ignore', 'inherit'] });
  const seeded = execFileSync(bin, ['seed'], { env, encoding: 'utf8' });
  const passwords = {};
  for (const match of seeded.matchAll(/account (\S+) \((\w+)\) created; password: (\S+)/g)) {
    passwords[match[2]] = { email: match[1], password: match[3] };
  }
  if (!passwords.staff || !passwords.auditor) throw new Error(`shop seed printed no accounts:\n${seeded}`);

  const child = spawn(bin, ['serve'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  const log = [];
  createInterface({ input: child.stderr }).on('line', (line) => log.push(line));
  const url = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`shop serve did not start:\n${log.join('\n')}`)), 60_000);
    child.on('exit', (code) => reject(new Error(`shop serve exited with ${code}:\n${log.join('\n')}`)));
    createInterface({ input: child.stdout }).on('line', (line) => {
      const match = line.match(/storefront at (http:\/\/\S+?)\/ /);
      if (match) {
        clearTimeout(timer);
        resolve(match[1]);
      }
    });
  });
  // ready: the read models have caught up with the seed
  for (let i = 0; i < 100; i++) {
    const res = await fetch(`${url}/health/ready`).catch(() => null);
    if (res?.ok) break;
    await new Promise((r) => setTimeout(r, 200));
  }
  return {
    url,
    database,
    accounts: passwords,
    log,
    async stop() {
      child.kill('SIGTERM');
      await new Promise((resolve) => {
        if (child.exitCode !== null) resolve();
        else child.on('exit', resolve);
      });
      execFileSync('psql', ['-h', PG.host, '-U', PG.user, '-qX', '-c', `DROP DATABASE IF EXISTS "${database}" WITH (FORCE)`]);
      rmSync(mediaDir, { recursive: true, force: true });
    },
  };
}
