// Host-side views for the root suites' leak checks (mounts, loop devices,
// cgroups): what a test made must be gone after its teardown.
import { readFileSync, readdirSync } from 'node:fs';

export const CONTROLLERS = ['cpu', 'memory', 'pids', 'freezer'];

/** Lines of /proc/self/mountinfo whose mount point is `dir` or below it. */
export function mountsUnder(dir) {
  return readFileSync('/proc/self/mountinfo', 'utf8').split('\n')
    .filter((l) => { const mp = l.split(' ')[4]; return mp === dir || (mp && mp.startsWith(dir + '/')); });
}

/** Loop devices whose backing file is `file`. */
export function loopsBacking(file) {
  const out = [];
  for (const n of readdirSync('/sys/block')) {
    if (!n.startsWith('loop')) continue;
    try {
      const b = readFileSync(`/sys/block/${n}/loop/backing_file`, 'utf8').trim();
      if (b === file || b.startsWith(file + ' ')) out.push(n);
    } catch { /* not bound */ }
  }
  return out;
}

/** cgroup directories (v1 controllers) under `prefix`, as "controller/name". */
export function cgroupsUnder(prefix) {
  const out = [];
  for (const c of CONTROLLERS) {
    try {
      for (const e of readdirSync(`/sys/fs/cgroup/${c}/${prefix}`, { withFileTypes: true })) if (e.isDirectory()) out.push(`${c}/${e.name}`);
    } catch { /* absent */ }
  }
  return out;
}

/**
 * Loop devices still bound to `file` after waiting up to `ms` for the kernel
 * to release them: a detached loop device whose last user just closed it is
 * released asynchronously, slowly under load (the C++ harness waits too).
 * A device still bound after the wait is a leak.
 */
export async function loopsLeft(file, ms = 60_000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const loops = loopsBacking(file);
    if (loops.length === 0 || Date.now() >= deadline) return loops;
    await new Promise((r) => setTimeout(r, 250));
  }
}
