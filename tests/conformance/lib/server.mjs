// Harness: starts a real `warren serve` on a temp data dir (port 0), parses its
// URL and first API key from stdout, and stops it. One server per test file.
//
// Contract of the binary (see issue 2):
//   warren serve --data-dir DIR --listen 127.0.0.1:0
//     stdout line 1: "Warren listening on http://127.0.0.1:PORT"
//     on first start with an empty data dir also: "API key: <key>"
//   SIGTERM = graceful shutdown.
//   warren keys create api --data-dir DIR              -> one org API key on stdout
//   warren keys create environment ENV_ID --data-dir DIR -> one environment key

import { spawn, execFile } from 'node:child_process';
import { mkdtemp, rm, readdir } from 'node:fs/promises';
import { existsSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import Anthropic from '@anthropic-ai/sdk';

const here = path.dirname(fileURLToPath(import.meta.url));
export const REPO_ROOT = path.resolve(here, '../../..');

export const WARREN_BIN = process.env.WARREN_BIN || path.join(REPO_ROOT, 'build/src/cli/warren');

/** Reason to skip a suite, or false when the binary exists. */
export function missingBinaryReason() {
  return existsSync(WARREN_BIN) ? false : `warren binary not found at ${WARREN_BIN} (set WARREN_BIN)`;
}

export async function makeDataDir(tag = 'conf') {
  return mkdtemp(path.join(tmpdir(), `warren-${tag}-`));
}

/**
 * A running `warren serve`. Owns the child process; stop() or kill() ends it.
 * Not thread-safe (single JS event loop).
 */
export class WarrenServer {
  constructor(child, dataDir, ownsDir) {
    this.child = child;
    this.pid = child.pid;
    this.dataDir = dataDir;
    this.ownsDir = ownsDir;
    this.url = null;
    this.apiKey = null;
    this.stdout = '';
    this.stderr = '';
    this.exit = null; // {code, signal} once exited
    this.exited = new Promise((resolve) => {
      child.on('exit', (code, signal) => {
        this.exit = { code, signal };
        resolve(this.exit);
      });
    });
  }

  get alive() {
    return this.exit === null;
  }

  /** Last lines of the server's stderr/stdout, for assertion messages. */
  tail(n = 40) {
    const lines = (this.stdout + '\n' + this.stderr).split('\n');
    return lines.slice(-n).join('\n');
  }

  /** Graceful stop: SIGTERM, then SIGKILL after `graceMs`. Returns the exit record. */
  async stop(graceMs = 5000) {
    if (this.alive) {
      this.child.kill('SIGTERM');
      const t = setTimeout(() => { if (this.alive) this.child.kill('SIGKILL'); }, graceMs);
      await this.exited;
      clearTimeout(t);
    }
    return this.exit;
  }

  /** SIGKILL, no grace. */
  async kill9() {
    if (this.alive) {
      this.child.kill('SIGKILL');
      await this.exited;
    }
    return this.exit;
  }

  async cleanup() {
    await this.kill9();
    if (this.ownsDir) await rm(this.dataDir, { recursive: true, force: true });
  }

  /** Resident set size in kB from /proc/PID/status (VmRSS), or null. */
  rssKb(field = 'VmRSS') {
    try {
      const s = readFileSync(`/proc/${this.pid}/status`, 'utf8');
      const m = s.match(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm'));
      return m ? Number(m[1]) : null;
    } catch {
      return null;
    }
  }

  /** SDK client with the org API key (the SDK sends it as its default auth). */
  client(opts = {}) {
    return sdkClient(this.url, { apiKey: this.apiKey, ...opts });
  }

  /** SDK client that authenticates with a Bearer token (environment key). */
  bearerClient(token, opts = {}) {
    return sdkClient(this.url, { apiKey: null, authToken: token, ...opts });
  }

  async createApiKey() {
    return runCli(['keys', 'create', 'api', '--data-dir', this.dataDir]);
  }

  async createEnvKey(envId) {
    return runCli(['keys', 'create', 'environment', envId, '--data-dir', this.dataDir]);
  }
}

export function sdkClient(baseURL, opts = {}) {
  return new Anthropic({
    baseURL,
    apiKey: null,
    authToken: null,
    maxRetries: 0,
    timeout: 30_000,
    ...opts,
  });
}

/** Runs the warren CLI, resolves with trimmed stdout; rejects on non-zero exit. */
export function runCli(args, { timeoutMs = 60_000 } = {}) {
  return new Promise((resolve, reject) => {
    execFile(WARREN_BIN, args, { timeout: timeoutMs }, (err, stdout, stderr) => {
      if (err) {
        reject(new Error(`warren ${args.join(' ')} failed: ${err.message}\n${stderr}`));
        return;
      }
      const out = stdout.trim();
      if (!out || out.includes('\n')) {
        reject(new Error(`warren ${args.join(' ')}: expected one line on stdout, got ${JSON.stringify(stdout)}`));
        return;
      }
      resolve(out);
    });
  });
}

/**
 * Starts `warren serve`. With no dataDir a fresh temp dir is made (and removed
 * by cleanup()). Resolves once the listening line (and, on a fresh dir, the
 * API key line) has been printed.
 */
export async function startServer({ dataDir, startTimeoutMs = 60_000, extraArgs = [], env = {}, orchestrator = false } = {}) {
  // The built-in orchestrator makes sandboxes for cloud tool calls: only the
  // suites that test it turn it on (with their own sandbox data dir).
  if (!orchestrator) extraArgs = ['--no-orchestrator', ...extraArgs];
  let ownsDir = false;
  if (!dataDir) {
    dataDir = await makeDataDir();
    ownsDir = true;
  }
  let fresh = true;
  try {
    fresh = (await readdir(dataDir)).length === 0;
  } catch {
    fresh = true;
  }
  const child = spawn(
    WARREN_BIN,
    ['serve', '--data-dir', dataDir, '--listen', '127.0.0.1:0', ...extraArgs],
    { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } },
  );
  const server = new WarrenServer(child, dataDir, ownsDir);
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (d) => {
    server.stderr += d;
    if (server.stderr.length > 1 << 20) server.stderr = server.stderr.slice(-(1 << 19));
  });
  child.stdout.setEncoding('utf8');

  await new Promise((resolve, reject) => {
    let done = false;
    const finish = (err) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      if (err) reject(err);
      else resolve();
    };
    const check = () => {
      const m = server.stdout.match(/Warren listening on (http:\/\/[^\s]+)/);
      if (m) server.url = m[1].replace(/\/$/, '');
      const k = server.stdout.match(/API key: (\S+)/);
      if (k) server.apiKey = k[1];
      if (server.url && (server.apiKey || !fresh)) finish();
    };
    child.stdout.on('data', (d) => {
      server.stdout += d;
      if (server.stdout.length > 1 << 20) server.stdout = server.stdout.slice(-(1 << 19));
      check();
    });
    child.on('exit', (code, signal) =>
      finish(new Error(`warren serve exited early (code ${code}, signal ${signal}):\n${server.tail()}`)));
    child.on('error', (e) => finish(e));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      finish(new Error(`warren serve did not print its URL${fresh ? ' and API key' : ''} within ${startTimeoutMs} ms:\n${server.tail()}`));
    }, startTimeoutMs);
  });
  return server;
}

/** Sleep helper. */
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
