// The standalone orchestrator's test helpers: one `warren orchestrator`
// process (its own sandbox data dir and cgroup prefix) serving a separate
// `warren serve` over HTTP, the `warren` CLI on its data dir, and the leak
// check of its data dir. Shared by orchestrator_standalone.test.mjs,
// orchestrator_standalone_webhook.test.mjs and the SIGKILL campaign
// (lib/orchestrator_crash.mjs, mode "standalone").
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { spawn, execFile } from 'node:child_process';
import { rmSync, rmdirSync, mkdirSync, chmodSync } from 'node:fs';
import { WARREN_BIN } from './server.mjs';
import { CONTROLLERS, mountsUnder, loopsLeft, cgroupsUnder } from './host.mjs';
import { RUNNER } from './orchestrator.mjs';

/** `warren ARGS...`; rejects on a non-zero exit unless check is false. */
export function cli(args, { check = true, env } = {}) {
  return new Promise((resolve, reject) => {
    execFile(WARREN_BIN, args, { timeout: 30_000, env: env ? { ...process.env, ...env } : undefined, maxBuffer: 1 << 24 },
      (err, stdout, stderr) => {
        if (err && check) reject(new Error(`warren ${args.join(' ')}: ${err.message}\n${stderr}`));
        else resolve({ stdout, stderr, code: err ? err.code : 0 });
      });
  });
}

/** One `warren orchestrator` process. */
export class Standalone {
  constructor(args, { env = {} } = {}) {
    this.args = args; this.env = env; this.child = null; this.log = []; this.stderr = ''; this.stdout = '';
    this.listeners = [];
  }
  /** Starts it and waits for its ready line ("Warren orchestrator serving"). */
  async start() {
    this.child = spawn(WARREN_BIN, ['orchestrator', ...this.args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...this.env } });
    this.pid = this.child.pid;
    this.exited = new Promise((r) => this.child.on('exit', (code, signal) => r({ code, signal })));
    let partial = '';
    this.child.stderr.setEncoding('utf8');
    this.child.stderr.on('data', (d) => {
      this.stderr = (this.stderr + d).slice(-(1 << 18));
      partial += d;
      const lines = partial.split('\n');
      partial = lines.pop();
      for (const l of lines) {
        let j;
        try { j = JSON.parse(l); } catch { continue; }
        this.log.push(j);
        for (const f of this.listeners) f(j);
      }
    });
    this.child.stdout.setEncoding('utf8');
    await new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`orchestrator did not start:\n${this.stderr}`)), 30_000);
      this.child.stdout.on('data', (d) => {
        this.stdout += d;
        if (this.stdout.includes('Warren orchestrator serving')) { clearTimeout(t); resolve(); }
      });
      this.exited.then((e) => { clearTimeout(t); reject(new Error(`orchestrator exited ${JSON.stringify(e)}:\n${this.stderr}`)); });
    });
  }
  /** Calls f(line) for every JSON log line from now on. */
  onLine(f) { this.listeners.push(f); }
  get alive() { return this.child && this.child.exitCode === null && this.child.signalCode === null; }
  async kill(sig) { if (this.alive) { this.child.kill(sig); await this.exited; } }
}

/**
 * A sandbox data dir and cgroup prefix for one `warren orchestrator`, the
 * usual flags, the CLI on that data dir, and the leak check at teardown.
 */
export class StandaloneHost {
  constructor(name) {
    const tag = `${process.pid}-${randomBytes(3).toString('hex')}`;
    this.dir = `/var/tmp/warren-${name}-${tag}`;
    this.prefix = `warren-${name}-${tag}`;
    mkdirSync(this.dir, { recursive: true });
    chmodSync(this.dir, 0o755);
  }
  /** The flags every orchestrator of this host gets, then `extra`. */
  args({ baseUrl, environmentId, key, extra = [] }) {
    return ['--base-url', baseUrl, '--environment-id', environmentId, '--environment-key', key,
      '--data-dir', this.dir, '--cgroup-prefix', this.prefix, '--runner-path', RUNNER, ...extra];
  }
  async list() {
    return JSON.parse((await cli(['sandbox', 'list', '--json', '--data-dir', this.dir])).stdout).data;
  }
  /** Deletes every sandbox of the data dir (call while an orchestrator runs, so that its stop unmounts the pool). */
  async removeAll() {
    let sbs = [];
    try { sbs = await this.list(); } catch { /* runtime never opened */ }
    if (sbs.length) await cli(['sandbox', 'rm', '--data-dir', this.dir, ...sbs.map((s) => s.id)], { check: false });
  }
  /** No mount, loop device or cgroup left; removes the data dir when clean. */
  async checkLeaks() {
    const mounts = mountsUnder(this.dir);
    const loops = await loopsLeft(`${this.dir}/pool.img`);
    const cgs = cgroupsUnder(this.prefix);
    for (const c of CONTROLLERS) { try { rmdirSync(`/sys/fs/cgroup/${c}/${this.prefix}`); } catch { /* absent */ } }
    if (mounts.length === 0 && loops.length === 0) rmSync(this.dir, { recursive: true, force: true });
    assert.deepEqual(mounts, [], 'no mount left');
    assert.deepEqual(loops, [], 'no loop device left');
    assert.deepEqual(cgs, [], 'no cgroup left');
  }
}
