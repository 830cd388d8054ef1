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
